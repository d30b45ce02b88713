import pyarrow as pa
import pytest

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


def test_batch_groups_are_written_apart_and_read_as_one(tmp_path):
    """Each batch writes only its own folder; the manifest reads the union, the older flat parts too."""
    m = Manifest(tmp_path / "m", SCHEMA)
    m.append([_row("old", "old", value=0)])  # a part from before batches had folders
    m.group("b1").append([_row("a", "a", value=1)])
    m.group("b2").append([_row("b", "b", value=2)])
    m.group("b1").append([_row("a", "a", key="k2", value=10)])
    assert m.groups() == ["", "b1", "b2"]
    assert sorted((r["id"], r["value"]) for r in m.iter_rows()) == [("a", 10), ("b", 2), ("old", 0)]
    m.group("b1").compact()
    assert len(m.group("b1").parts()) == 1 and len(m.group("b2").parts()) == 1 and len(m.parts()) == 1
    m.drop_group("b2")
    assert m.groups() == ["", "b1"] and not (tmp_path / "m" / "b2").exists()
    with pytest.raises(ValueError, match="not a usable batch name"):
        m.group("../elsewhere")


def test_two_writers_of_one_group_never_replace_each_others_part(tmp_path):
    first, second = Manifest(tmp_path / "m", SCHEMA).group("b"), Manifest(tmp_path / "m", SCHEMA).group("b")
    names = {first._next_part().name, second._next_part().name}  # both see no parts: the same sequence number
    assert len(names) == 2 and all(n.startswith("part-000000-") for n in names)


def test_done_keys_leave_out_errors_worth_another_try(tmp_path):
    m = Manifest(tmp_path / "m", SCHEMA)
    m.append([_row("a", "a"), _row("b", "b", error="transient: HTTP 503"), _row("c", "c", error="not_found: 404")])
    assert m.done_keys() == {"a": "k", "b": "k", "c": "k"}
    assert m.done_keys(lambda e: e.startswith("transient")) == {"a": "k", "c": "k"}


def test_fixed_size_lists_with_nulls_round_trip(tmp_path):
    schema = schema_with(pa.field("vec", pa.list_(pa.float32(), 4)))
    m = Manifest(tmp_path / "m", schema)
    m.group("b").append([{"id": "x", "input_id": "x", "key": "k", "vec": [1, 2, 3, 4]},
                         {"id": "y", "input_id": "y", "key": "k", "vec": None}])
    m.group("b").append([{"id": "z", "input_id": "z", "key": "k", "vec": None}])
    m.group("b").compact()
    table = m.read()
    assert table.schema.field("vec").type == pa.list_(pa.float32(), 4)
    assert sorted(table.to_pylist(), key=lambda r: r["id"])[0]["vec"] == [1, 2, 3, 4]
