"""The GX suites pass good manifests and name the expectation and the rows a bad one breaks."""

import math

import numpy as np
import pandas as pd
import pytest

from vmas.quality.suites import evaluate_frame, validate


@pytest.fixture(scope="module")
def cfg(repo):
    from vmas.config import load_config

    return load_config(repo / "configs" / "demo.yaml")


def test_filter_static_kept_must_follow_the_threshold(cfg):
    rows = pd.DataFrame({"id": list("abcd"), "error": [None, None, None, "unreadable"],
                         "similarity": [0.2, 0.9, 0.5, None], "kept": [True, False, True, None]})
    assert validate("filter_static", rows, cfg).success  # the failed row is not validated
    bad = rows.assign(kept=[True, True, True, None])  # b is static (0.9 >= 0.7) but kept
    outcome = validate("filter_static", bad, cfg)
    [failure] = outcome.failures()
    assert failure.name == "kept iff similarity < 0.7" and failure.unexpected_count == 1 and failure.error is None
    assert failure.examples == ["b"]  # the failing row, by id


def test_probe_ranges_and_unique_ids(cfg):
    rows = pd.DataFrame({"id": ["a", "b"], "error": [None, None], "duration_s": [3.0, 10.0], "fps": [25.0, 30.0],
                         "rotation": [0, 90]})
    assert validate("probe", rows, cfg).success
    bad = validate("probe", rows.assign(id=["a", "a"], duration_s=[0.0, 10.0], rotation=[0, 45]), cfg)
    assert {f.name for f in bad.failures()} == {"ids unique", "duration > 0", "rotation valid"}
    assert [e.name for e in bad.expectations] == ["ids unique", "duration > 0", "fps in range", "rotation valid"]


def test_tokenize_reads_the_codes(cfg, tmp_path):
    steps = int(cfg.clip.seconds * cfg.codec.frame_rate)
    good, bad = tmp_path / "good.npz", tmp_path / "bad.npz"
    np.savez(good, codes=np.zeros((4, steps), np.int16), beat_weights=np.ones(steps, np.float32))
    np.savez(bad, codes=np.full((4, steps), 2048, np.int16), beat_weights=np.full(steps, np.nan, np.float32))
    rows = pd.DataFrame({"id": ["g", "b"], "error": [None, None], "tokens_path": [str(good), str(bad)],
                         "codec_sha256": ["x", "x"]})
    outcome = validate("tokenize", rows, cfg)
    assert {f.name: f.unexpected_count for f in outcome.failures()} == {"codes in [0, 2048)": 1,
                                                                          "beat weights finite, [T]": 1}


def test_evaluate_needs_every_metric_finite(cfg):
    metrics = {"mv_align": 0.1, "mv_align_reference": 0.2, "fad": 3.0, "kl": 1.0, "retrieval_r1": 0.1,
               "retrieval_r10": 1.0}
    assert validate("evaluate", evaluate_frame(metrics), cfg).success
    outcome = validate("evaluate", evaluate_frame({**metrics, "fad": math.nan, "kl": None}), cfg)
    [failure] = outcome.failures()
    assert failure.unexpected_count == 2


def test_a_missing_column_is_an_error_not_a_data_failure(cfg):
    outcome = validate("probe", pd.DataFrame({"id": ["a"], "error": [None], "fps": [25.0], "rotation": [0]}), cfg)
    [failure] = outcome.failures()
    assert failure.name == "duration > 0" and failure.error


def test_remove_vocals_allows_a_share_of_loud_residuals(cfg):
    quiet = pd.DataFrame({"id": [str(i) for i in range(10)], "error": [None] * 10,
                          "instrumental_path": ["x.wav"] * 10, "residual_vocal_db": [-20.0] * 9 + [-3.0]})
    assert validate("remove_vocals", quiet, cfg).success  # 90 % under the bound
    loud = quiet.assign(residual_vocal_db=[-20.0] * 8 + [-3.0, -2.0])
    [failure] = validate("remove_vocals", loud, cfg).failures()
    assert failure.unexpected_count == 2


def _probe_manifest(cfg, rows: list[dict]) -> None:
    from vmas.curation import STAGES
    from vmas.layout import manifest_dir
    from vmas.manifest import Manifest

    full = [{"input_id": r["id"], "key": "k", "error": None, "duration_s": 8.0, "fps": 25.0, "rotation": 0, **r}
            for r in rows]
    Manifest(manifest_dir(cfg, "probe"), STAGES["probe"].schema).append(full)


def test_vmas_check_names_the_failing_expectation_and_rows_and_exits_1(cfg, tmp_path):
    import json

    from typer.testing import CliRunner

    from vmas.cli.main import app

    cfg = cfg.model_copy(update={"paths": cfg.paths.model_copy(update={"artifacts_dir": tmp_path})})
    args = ["check", "probe", "--set", f"paths.artifacts_dir={tmp_path}"]
    missing = CliRunner().invoke(app, args)
    assert missing.exit_code != 0 and "no manifest (run `vmas probe`)" in str(missing.exception)
    _probe_manifest(cfg, [{"id": "good"}, {"id": "fast", "fps": 1000.0}, {"id": "broken", "fps": None,
                                                                         "error": "unreadable: x.mp4"}])
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 1, result.output
    outcome = json.loads(result.output)
    assert outcome["rows"] == 2 and not outcome["success"]  # the failed row is the stage's business, not the suite's
    [failed] = [e for e in outcome["expectations"] if not e["success"]]
    assert failed["name"] == "fps in range" and failed["unexpected_count"] == 1 and failed["examples"] == ["fast"]
    text = CliRunner().invoke(app, args)
    assert "FAIL fps in range  1 of 2 rows, e.g. ['fast']" in text.output and "probe: 2 rows, FAILED" in text.output
    _probe_manifest(cfg, [{"id": "fast"}])
    assert CliRunner().invoke(app, args).exit_code == 0
