"""A small local OpenAI-compatible server for backend tests (loopback only, stdlib HTTP).

Its behaviour is set per test: stream an answer, fail with a status, or break mid-stream.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Behaviour:
    chunks: list[str] = field(default_factory=lambda: ["Hello", " from", " upstream."])
    status: int = 200
    error: str = "rate limited"
    # What else an error carries: its body's type, code and param, a Retry-After header.
    error_type: str | None = None
    error_code: str | None = None
    error_param: str | None = None
    retry_after: str | None = None
    break_after: int | None = None  # close the connection after this many chunks


class FakeOpenAI:
    def __init__(self) -> None:
        self.behaviour = Behaviour()
        self.requests: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                fake.requests.append(body)
                b = fake.behaviour
                if b.status != 200:
                    error = {
                        "message": b.error,
                        "type": b.error_type,
                        "code": b.error_code,
                        "param": b.error_param,
                    }
                    payload = json.dumps({"error": error}).encode()
                    self.send_response(b.status)
                    if b.retry_after is not None:
                        self.send_header("retry-after", b.retry_after)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("connection", "close")
                self.end_headers()
                for i, text in enumerate(b.chunks):
                    if b.break_after is not None and i >= b.break_after:
                        self.wfile.flush()
                        self.close_connection = True
                        return
                    self._event(
                        {
                            "choices": [
                                {"index": 0, "delta": {"content": text}, "finish_reason": None}
                            ]
                        }
                    )
                self._event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                self._event(
                    {
                        "choices": [],
                        "usage": {
                            "prompt_tokens": 7,
                            "completion_tokens": len(b.chunks),
                            "total_tokens": 7 + len(b.chunks),
                        },
                    }
                )
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

            def _event(self, data: dict) -> None:
                self.wfile.write(f"data: {json.dumps(data)}\n\n".encode())

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._server.server_port}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
