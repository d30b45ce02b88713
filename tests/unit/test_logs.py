import json
import logging

from vmas.logs import JsonFormatter, TextFormatter


def _record(**fields):
    record = logging.LogRecord("vmas.x", logging.INFO, __file__, 1, "did %s", ("it",), None)
    record.fields = fields
    return record


def test_json_lines_keep_fields_as_structure():
    out = json.loads(JsonFormatter().format(_record(items=3, path="data")))
    assert out["msg"] == "did it" and out["items"] == 3 and out["path"] == "data"
    assert out["level"] == "info" and out["logger"] == "vmas.x" and out["ts"].endswith("Z")


def test_text_lines_append_key_values():
    assert TextFormatter().format(_record(items=3)).endswith("did it  items=3")
