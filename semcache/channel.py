"""What every gRPC channel and server of the mesh agrees on, the SDK's included."""

from __future__ import annotations

from typing import Any

#: Generous message limits: a call may carry up to 256 texts of 32 KiB; the servicers
#: enforce the real limits with clear errors.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]
