import pyarrow as pa

from vmas.manifest import Manifest, content_key, schema_with

SCHEMA = schema_with(pa.field("value", pa.int64()))


def _row(i, inp, key="k", value=0, error=None):
    return {"id": i, "input_id": inp, "key": key, "error": error, "value": value}


def test_newer_parts_supersede_older_per_input(tmp_path):
    m = Manifest(tmp_path / "m", SCHEMA)
    m.append([_row("a/0", "a", value=1), _row("a/1", "a", value=2), _row("b", "b", value=3)])
    m.append([_row("a/0", "a", key="k2", value=10)])  # input a re-done: now one row
    rows = sorted((r["id"], r["value"]) for r in m.iter_rows())
    assert rows == [("a/0", 10), ("b", 3)]
    assert m.done_keys() == {"a": "k2", "b": "k"}


def test_compact_folds_parts_and_drops_inputs_gone_upstream(tmp_path):
    m = Manifest(tmp_path / "m", SCHEMA)
    for i in range(3):
        m.append([_row(str(i), str(i), value=i)])
    m.append([_row("1", "1", key="new", value=11)])
    m.compact(keep_inputs={"0", "1"})
    assert len(m.parts()) == 1
    assert sorted((r["id"], r["value"]) for r in m.iter_rows()) == [("0", 0), ("1", 11)]
    m.compact()
    assert m.read().num_rows == 2


def test_empty_manifest_and_columns(tmp_path):
    m = Manifest(tmp_path / "none", SCHEMA)
    assert not m.exists() and m.read().num_rows == 0 and m.done_keys() == {}
    assert m.append([]) is None
    m.append([_row("x", "x", value=5)])
    assert m.read(["value"]).to_pylist() == [{"value": 5}]


def test_content_key_is_stable_and_sensitive():
    assert content_key("s", {"a": 1, "b": [1, 2]}) == content_key("s", {"b": [1, 2], "a": 1})
    assert content_key("s", {"a": 1}) != content_key("s", {"a": 2})
