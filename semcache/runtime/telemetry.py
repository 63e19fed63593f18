"""Structured logging: one JSON object per line.

Extra fields go in `extra={...}`; a line logged inside a traced span carries its `trace_id`
and `span_id` (`semcache.runtime.tracing`). Prompt and answer text must only be logged at DEBUG:
callers pass them under keys listed in `SENSITIVE_KEYS` and this formatter drops them at
any other level.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from semcache.runtime import tracing

SENSITIVE_KEYS = frozenset({"prompt", "answer", "text", "texts"})
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if (ids := tracing.ids()) is not None:
            entry["trace_id"], entry["span_id"] = ids
        debug = logging.getLogger().isEnabledFor(logging.DEBUG)
        for key, value in vars(record).items():
            if key in _STANDARD_ATTRS or (key in SENSITIVE_KEYS and not debug):
                continue
            entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
