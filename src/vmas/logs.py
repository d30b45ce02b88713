"""Structured logging: human-readable lines on a terminal, one JSON object per line on request.

Extra fields passed as ``log.info("msg", extra={"fields": {...}})`` are kept as structure: in JSON
mode they become keys, in text mode they are appended as ``key=value``.
"""

from __future__ import annotations

import json
import logging
import sys
import time

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, "fields", {})
        return line + ("  " + " ".join(f"{k}={v}" for k, v in fields.items()) if fields else "")


def setup_logging(level: str = "INFO", json_lines: bool = False) -> None:
    """Configure the ``vmas`` logger tree once (idempotent), writing to stderr."""
    root = logging.getLogger("vmas")
    root.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False
