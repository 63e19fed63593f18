"""embed_svc: the embedding service (int8 ONNX MiniLM behind gRPC, micro-batched)."""
