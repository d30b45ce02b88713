"""What the assets show in Dagster's UI, and the codec gate as a blocking check, in-process on real data.

Manifests are written by the stages themselves (``ingest``) or through ``Manifest``; GX suites run for
real; the codec is a tiny one trained here (as in tests/unit/codec/test_train_codec.py), its report
read back from what Dagster recorded. Instances are ephemeral (in memory)."""

import base64
import io
import json
import math
import random

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from PIL import Image

# Dagster's own reader of the dagster/ table keys (what its UI uses): private, but it is the contract
from dagster._core.definitions.metadata.metadata_set import TableMetadataSet

from orchestration.assets.curation import curation_assets, ingest_batches
from orchestration.assets.metadata import (INLINE_MARKDOWN, column_type, curve, curves, manifest_rows, sparkline,
                                           table_metadata)
from orchestration.checks import CHECK, CODEC_GATE, codec_gate_result, suite_check_result, suite_outcome_result
from orchestration.resources import MlflowTracking, VmasConfig
from vmas.config import load_config
from vmas.curation import STAGES
from vmas.layout import manifest_dir, output_dir, trained_codec_path
from vmas.manifest import Manifest
from vmas.quality.suites import validate

ASSETS = {a.key.to_user_string(): a for a in curation_assets}


def _config(repo, tmp_path, overrides=()):
    cfg = load_config(repo / "configs" / "demo.yaml", overrides=[
        f"paths.data_dir={tmp_path / 'data'}", f"paths.artifacts_dir={tmp_path / 'artifacts'}", *overrides])
    (tmp_path / "config.yaml").write_text(cfg.to_yaml())
    return cfg, {"vmas": VmasConfig(config_file=str(tmp_path / "config.yaml")), "mlflow": MlflowTracking()}


def _png(markdown: str) -> Image.Image:
    assert markdown.startswith("![") and "](data:image/png;base64," in markdown
    data = markdown.split("](data:image/png;base64,", 1)[1].split(")", 1)[0]
    return Image.open(io.BytesIO(base64.b64decode(data)))


def _records(value) -> dict[str, dict]:
    return {r.data["expectation"]: r.data for r in value.records}


# ---- standard table metadata --------------------------------------------------------------------------------


def test_ingest_reports_row_counts_and_the_column_schema(repo, tmp_path, live_instance):
    """The real ingest asset, two batches: the whole manifest's rows, the batch's rows, the columns."""
    cfg, resources = _config(repo, tmp_path)
    (tmp_path / "data").mkdir()
    for name in ("a.mp4", "b.mp4", "c.webm"):
        (tmp_path / "data" / name).write_bytes(name.encode() * 100)
    instance = live_instance
    instance.add_dynamic_partitions(ingest_batches.name, ["one", "two"])
    first = dg.materialize([ASSETS["ingest"]], partition_key="one", instance=instance, resources=resources)
    (tmp_path / "data" / "d.mp4").write_bytes(b"d" * 100)
    second = dg.materialize([ASSETS["ingest"]], partition_key="two", instance=instance, resources=resources)

    seen = []
    for result in (first, second):
        [event] = result.get_asset_materialization_events()
        metadata = event.materialization.metadata
        table = TableMetadataSet.extract(metadata)
        seen.append((table.row_count, table.partition_row_count, metadata["rows"].value))
        schema = STAGES["ingest"].schema
        assert [c.name for c in table.column_schema.columns] == schema.names
        types = {c.name: c.type for c in table.column_schema.columns}
        assert types["id"] == "string" and types["size_bytes"] == "int64" and types["audio_embedding"] == "float32[512]"
        assert types["video_duration_s"] == "float64" and types["similarity_audio"] == "float32"
        assert "content hash" in table.column_schema.columns[0].description
        [check] = result.get_asset_check_evaluations()
        assert check.check_name == CHECK and check.passed
        rows = _records(check.metadata["expectations"].value)
        assert "files not empty" in rows and all(r["success"] and r["unexpected count"] == 0 for r in rows.values())
    assert seen == [(3, 3, 3), (4, 1, 1)]  # every batch's rows; this batch's
    # the definition carries the columns too: the UI shows them before anything ran
    spec = ASSETS["ingest"].specs_by_key[dg.AssetKey("ingest")]
    assert TableMetadataSet.extract(spec.metadata).column_schema == table.column_schema


def test_row_counts_leave_out_superseded_rows_and_name_the_readable_types(tmp_path):
    schema = STAGES["beats"].schema
    root = tmp_path / "beats"
    rows = [{"id": f"v{i}/0000", "input_id": f"v{i}", "key": "k", "error": None, "music_beats": [0.5, 1.0]}
            for i in range(3)]
    Manifest(root, schema).group("b1").append(rows[:2])
    Manifest(root, schema).group("b2").append(rows[2:])
    Manifest(root, schema).group("b1").append([{**rows[0], "key": "k2"}])  # supersedes v0's row
    assert manifest_rows(root) == 3 and manifest_rows(tmp_path / "nothing") == 0
    metadata = table_metadata(schema, manifest_rows(root), 2)
    table = TableMetadataSet.extract(metadata)
    assert (table.row_count, table.partition_row_count) == (3, 2)
    types = {c.name: c.type for c in table.column_schema.columns}
    assert types["music_beats"] == "list<float32>" and types["aligned_beats"] == "int32"
    assert "dagster/partition_row_count" not in table_metadata(schema, 3)  # an unpartitioned asset's
    assert column_type(STAGES["filter_static"].schema.field("kept").type) == "bool"


# ---- Great Expectations results as a table ----------------------------------------------------------------


def test_a_failing_suite_is_a_table_naming_the_rows(repo, tmp_path):
    """A real probe manifest with one impossible frame rate, checked by the real suite."""
    cfg, _ = _config(repo, tmp_path)
    base = {"key": "k", "error": None, "duration_s": 8.0, "rotation": 0}
    Manifest(manifest_dir(cfg, "probe"), STAGES["probe"].schema).append(
        [{"id": "good", "input_id": "good", "fps": 25.0, **base}, {"id": "fast", "input_id": "fast", "fps": 1000.0,
                                                                   **base}])
    result = suite_check_result("probe", cfg)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.ERROR
    assert result.description == "failed: fps in range"
    assert result.metadata["rows"].value == 2 and result.metadata["failed: fps in range"].value == 1
    table = result.metadata["expectations"].value
    assert [c.name for c in table.schema.columns] == ["expectation", "success", "unexpected count", "unexpected %",
                                                      "examples", "error"]
    rows = _records(table)
    assert list(rows) == ["ids unique", "duration > 0", "fps in range", "rotation valid"]  # the suite's order
    assert rows["fps in range"] == {"expectation": "fps in range", "success": False, "unexpected count": 1,
                                    "unexpected %": 50.0, "examples": "fast", "error": ""}
    assert rows["duration > 0"]["success"] and rows["duration > 0"]["examples"] == ""


def test_an_expectation_that_could_not_run_says_why(repo):
    cfg = load_config(repo / "configs" / "demo.yaml")
    outcome = validate("probe", pd.DataFrame({"id": ["a"], "error": [None], "fps": [25.0], "rotation": [0]}), cfg)
    result = suite_outcome_result(outcome)
    row = _records(result.metadata["expectations"].value)["duration > 0"]
    assert not row["success"] and "duration_s" in row["error"]
    assert not any(k.startswith("failed:") for k in result.metadata)  # not a count of bad rows: there were none
    assert result.description.startswith("failed: duration > 0 (could not run: ")


# ---- inline curves ------------------------------------------------------------------------------------------


def _line_rows(image: Image.Image) -> list[int]:
    """The row of the line (palette index 2) in each pixel column: its topmost pixel."""
    pixels = np.array(image)
    return [int(np.flatnonzero(pixels[:, x] == 2)[0]) for x in range(pixels.shape[1])]


def test_a_curve_is_an_inline_sparkline_of_the_values():
    history = [{"step": s, "loss": 10.0 - s} for s in range(0, 10)]
    value = curve(history, "loss")
    assert len(value.value) < INLINE_MARKDOWN  # Dagster shows it in the table, not behind a link
    assert value.value.endswith("10 → 1 (min 1), steps 0–9, 10 values")
    image = _png(value.value)
    assert image.size == (240, 48) and image.mode == "P"
    line = _line_rows(image)
    assert line[0] == 0 and line[-1] == 47 and line == sorted(line)  # largest at the top, falling to the bottom
    assert np.array(image)[0, -1] == 0  # the background (transparent)
    rising = _line_rows(Image.open(io.BytesIO(sparkline([0, 5, 10], [1.0, 2.0, 3.0], 30, 10))))
    assert rising[0] == 9 and rising[15] in (4, 5) and rising[-1] == 0


def test_long_noisy_curves_still_show_inline_and_gaps_are_left_out():
    rng = random.Random(0)
    noisy = [{"step": s, "loss": rng.random(), "other": math.nan} for s in range(5000)]
    value = curve(noisy, "loss")
    assert len(value.value) < INLINE_MARKDOWN and _png(value.value).height == 48
    assert curve(noisy, "other") is None  # nothing finite to draw
    assert set(curves(noisy, ["loss", "other", "absent"])) == {"loss curve"}
    gappy = [{"step": 0, "loss": 4.0}, {"step": 1, "loss": math.inf}, {"step": 2}, {"step": 3, "loss": 1.0}]
    assert curve(gappy, "loss").value.endswith("4 → 1 (min 1), steps 0–3, 2 values")
    with pytest.raises(ValueError, match="no finite value"):
        sparkline([0, 1], [math.nan, math.inf])


# ---- the codec gate as a blocking check ----------------------------------------------------------------------

SR = 32000
TINY_CODEC = ["codec.pretrained=null", "codec.channels=2", "codec.dimension=16", "codec.lstm_layers=0",
              "codec.cardinality=64", "codec.train.max_steps=6", "codec.train.batch_size=2",
              "codec.train.segment_s=0.5",
              "codec.gate.max_mel_distance=1000", "codec.gate.min_onset_f=0"]


def _clips(cfg, tmp_path, batch: str) -> None:
    """Six four-second click tracks from three 'videos', as clip and beats rows of ``batch``."""
    clip_rows, beat_rows = [], []
    for v in range(3):
        for k in range(2):
            rng = np.random.default_rng(10 * v + k)
            t = np.arange(4 * SR) / SR
            y = 0.05 * np.sin(2 * np.pi * rng.uniform(100, 400) * t)
            for start in np.arange(0.25, 4.0, 0.5):
                n = np.arange(int(0.1 * SR))
                y[int(start * SR): int(start * SR) + len(n)] += 0.5 * np.exp(-n / 600) * rng.standard_normal(len(n))
            cid, audio = f"video{v}/{k:04d}", tmp_path / f"video{v}-{k}.wav"
            sf.write(audio, y.astype(np.float32), SR)
            base = {"id": cid, "input_id": f"video{v}", "key": f"k{v}{k}", "error": None, "video_id": f"video{v}",
                    "audio_path": str(audio), "video_path": str(tmp_path / f"video{v}-{k}.mp4")}
            clip_rows.append({**base, "start_s": 4.0 * k, "end_s": 4.0 * (k + 1)})
            beat_rows.append({**base, "token_rate": 50, "beat_weights": [0.5] * 200})
    Manifest(manifest_dir(cfg, "clip"), STAGES["clip"].schema).group(batch).append(clip_rows)
    Manifest(manifest_dir(cfg, "beats"), STAGES["beats"].schema).group(batch).append(beat_rows)


def _steps(result, event: str) -> list[str]:
    return [e.step_key for e in result.all_events if e.event_type_value == event]


@pytest.mark.slow  # trains a codec (about a minute on two busy cores, most of it MLflow's first database)
def test_a_codec_below_the_gate_is_recorded_and_stops_tokenize(repo, tmp_path, live_instance):
    """A real (tiny) training judged by an impossible SI-SNR floor: the materialisation and its numbers are
    recorded, the blocking check fails, tokenize does not run; the same codec under a reachable floor is
    re-judged (not retrained), passes, and tokenize runs on it."""
    instance = live_instance
    instance.add_dynamic_partitions(ingest_batches.name, ["b1"])
    assets = [ASSETS["train_codec"], ASSETS["tokenize"]]

    strict, resources = _config(repo, tmp_path, [*TINY_CODEC, "codec.gate.min_si_snr_db=90"])
    _clips(strict, tmp_path, "b1")
    failed = dg.materialize(assets, partition_key="b1", instance=instance, resources=resources, raise_on_error=False)
    assert not failed.success
    assert _steps(failed, "STEP_FAILURE") == ["train_codec"] and "tokenize" not in _steps(failed, "STEP_START")
    assert [e.asset_key.to_user_string() for e in failed.get_asset_materialization_events()] == ["train_codec"]
    [check] = failed.get_asset_check_evaluations()
    assert check.check_name == CODEC_GATE and not check.passed and check.blocking
    assert "codec.gate.min_si_snr_db 90" in check.description
    gate = {k: v.value for k, v in check.metadata.items()}
    written = json.loads((output_dir(strict, "train_codec") / "report.json").read_text())
    assert gate["min SI-SNR (dB)"] == 90.0 and gate["held-out SI-SNR (dB)"] == written["metrics"]["si_snr_db"] < 90
    assert gate["max mel distance (dB)"] == 1000.0 and gate["held-out onset F"] == written["metrics"]["onset_f"]
    assert gate["held-out clips"] == written["held_out_clips"] and gate["problems"] == written["gate"]["problems"]
    [event] = failed.get_asset_materialization_events()
    codec = {k: v.value for k, v in event.materialization.metadata.items()}
    assert codec["rejected candidate"].endswith("candidate.bin") and "codec" not in codec
    assert codec["steps"] == 6 and "/#/experiments/" in codec["MLflow run"]
    assert set(codec) >= {"loss curve", "msspec curve", "sisnr curve", "commitment curve"}
    assert all(len(codec[f"{k} curve"]) < INLINE_MARKDOWN for k in ("loss", "msspec", "sisnr", "commitment"))
    assert _png(codec["loss curve"]).size == (240, 48)
    assert codec["training curves"].endswith("training_curves.png")
    assert not trained_codec_path(strict).exists()

    relaxed, resources = _config(repo, tmp_path, [*TINY_CODEC, "codec.gate.min_si_snr_db=-100"])
    passed = dg.materialize(assets, partition_key="b1", instance=instance, resources=resources)
    checks = {e.check_name: e for e in passed.get_asset_check_evaluations()}
    assert checks[CODEC_GATE].passed and checks[CODEC_GATE].metadata["min SI-SNR (dB)"].value == -100.0
    assert checks[CODEC_GATE].description.startswith("held-out SI-SNR ")
    assert checks[CHECK].passed  # tokenize's suite, on the tokens it wrote with the published codec
    assert sorted(e.asset_key.to_user_string() for e in passed.get_asset_materialization_events()) == [
        "tokenize", "train_codec"]
    assert trained_codec_path(relaxed).is_file()


def test_other_codec_errors_fail_the_step_without_a_verdict(repo, tmp_path, live_instance):
    """No clips to train on: the stage's own error, even beside an old report of a failed gate."""
    cfg, resources = _config(repo, tmp_path, TINY_CODEC)
    out = output_dir(cfg, "train_codec")
    out.mkdir(parents=True)
    (out / "report.json").write_text(json.dumps({"metrics": {}, "gate": {"passed": False, "problems": ["old"]}}))
    result = dg.materialize([ASSETS["train_codec"]], instance=live_instance, resources=resources,
                            raise_on_error=False)
    assert not result.success and _steps(result, "STEP_FAILURE") == ["train_codec"]
    assert not result.get_asset_materialization_events() and not result.get_asset_check_evaluations()
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "no clip manifest" in failure.event_specific_data.error.cause.message


def test_the_gate_check_follows_the_reports_verdict_and_shows_the_numbers(repo):
    """Reports as train_codec writes them (its ``judge`` decides), one passing and one failing."""
    from vmas.codec.train_codec import judge

    gate = load_config(repo / "configs" / "demo.yaml").codec.gate
    good = {"si_snr_db": gate.min_si_snr_db + 1, "mel_distance_db": gate.max_mel_distance / 2, "onset_f": 0.99}
    for metrics, passed in ((good, True), ({**good, "onset_f": gate.min_onset_f / 2}, False)):
        problems = judge(metrics, gate)
        report = {"metrics": metrics, "held_out_clips": 3,
                  "gate": {**gate.model_dump(), "passed": not problems, "problems": problems}}
        result = codec_gate_result(report)
        assert result.passed is passed and result.check_name == CODEC_GATE
        values = {k: v.value for k, v in result.metadata.items()}
        assert values["held-out onset F"] == metrics["onset_f"] and values["min onset F"] == gate.min_onset_f
        assert values["min SI-SNR (dB)"] == gate.min_si_snr_db
        assert values["max mel distance (dB)"] == gate.max_mel_distance
        assert values["onset tolerance (s)"] == gate.onset_tolerance_s and values["held-out clips"] == 3
        if passed:
            assert "problems" not in values and result.description.startswith(
                f"held-out SI-SNR {metrics['si_snr_db']:.2f} dB >= {gate.min_si_snr_db}")
        else:
            assert values["problems"] == problems and result.description == problems[0]
            assert "codec.gate.min_onset_f" in result.description


def test_a_pretrained_codec_passes_the_gate_saying_so(repo, tmp_path):
    from vmas.codec.loading import resolve_codec_path
    from vmas.codec.train_codec import train_codec

    cfg, _ = _config(repo, tmp_path, ["codec.pretrained=vmas:demo"])
    result = codec_gate_result(train_codec(cfg, progress=False))
    assert result.passed and result.check_name == CODEC_GATE
    assert result.description.startswith("codec.pretrained is set: ")
    assert result.metadata["pretrained"].value == str(resolve_codec_path(cfg))
    with pytest.raises(ValueError, match="without its gate"):
        codec_gate_result({"metrics": {"si_snr_db": 1.0}})
