"""`vmas ablation` end to end on the demo's tokens with tiny runs: the table, the runs and MLflow's nesting."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from vmas.tracking.runs import tracking_uri

pytestmark = pytest.mark.slow


def _ablation(cfg, repo, out):
    vmas = shutil.which("vmas") or str(Path(sys.executable).parent / "vmas")
    sets = [f"paths.data_dir={cfg.paths.data_dir}", f"paths.artifacts_dir={cfg.paths.artifacts_dir}",
            "train.max_steps=2", "train.val_every_n_steps=2", "train.checkpoint_every_n_steps=2",
            "train.num_workers=0", "evaluate.report_clips=1"]
    args = [vmas, "ablation", "--seeds", "0,1", "--variants", "baseline,full", "--out", str(out), "--no-progress",
            "--config", str(repo / "configs" / "demo.yaml")]
    for s in sets:
        args += ["--set", s]
    result = subprocess.run(args, capture_output=True, text=True, cwd=Path(cfg.paths.artifacts_dir).parent,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout[result.stdout.index("{"):])


@pytest.fixture(scope="module")
def ablated(trained, repo):
    cfg, _ = trained
    out = Path(cfg.paths.artifacts_dir) / "ablation-test"
    return cfg, out, _ablation(cfg, repo, out), repo


def test_the_table_has_every_variant_with_intervals_chance_and_ceilings(ablated):
    cfg, out, printed, _ = ablated
    summary = json.loads((out / "ablation.json").read_text())
    assert list(summary["variants"]) == ["baseline", "full"] and summary["seeds"] == [0, 1]
    for variant in summary["variants"].values():
        for metric in ("mv_align", "fad", "kl", "retrieval_r1", "retrieval_r10", "mv_align_chance"):
            assert variant[metric]["n"] == 2 and variant[metric]["ci"] is not None, metric
    assert summary["chance"]["retrieval_r1"] == pytest.approx(1 / summary["clips"])
    assert summary["reference"]["mv_align_reference"]["mean"] is not None
    assert summary["reference"]["mv_align_codec"]["mean"] is not None
    assert {t["target"] for t in summary["targets"]} >= {"full MV-Align >= 1.5 x its chance level"}
    assert printed["clips"] == summary["clips"] >= 2
    runs = summary["runs"]
    assert [(r["variant"], r["seed"]) for r in runs] == [("baseline", 0), ("baseline", 1), ("full", 0), ("full", 1)]
    # one split: every run is judged on the same clips
    clips = {json.dumps(sorted(c["id"] for c in json.loads(
        (out / r["variant"] / f"seed-{r['seed']}" / "evaluate" / "evaluation.json").read_text())["per_clip"]))
             for r in runs}
    assert len(clips) == 1
    page = (out / "ablation.html").read_text()
    assert "baseline" in page and "ablation.png" in page and (out / "ablation.png").is_file()
    models = {(out / r["variant"] / f"seed-{r['seed']}" / "train" / "model.pt").read_bytes()[-4096:] for r in runs}
    assert len(models) == 4  # other seeds and variants train other weights


def test_runs_are_children_of_one_parent_and_a_rerun_does_nothing(ablated):
    cfg, out, _, repo = ablated
    client = mlflow.tracking.MlflowClient(tracking_uri(cfg))
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    (parent,) = client.search_runs([experiment.experiment_id], filter_string="tags.stage = 'ablation' and "
                                   "tags.mlflow.runName = 'ablation'")
    children = client.search_runs([experiment.experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert sorted(c.data.tags["mlflow.runName"] for c in children) == ["baseline-seed0", "baseline-seed1",
                                                                       "full-seed0", "full-seed1"]
    assert all("mv_align" in c.data.metrics for c in children)
    assert "full/mv_align" in parent.data.metrics
    before = (out / "full" / "seed-1" / "train" / "model.pt").stat().st_mtime_ns
    _ablation(cfg, repo, out)
    assert (out / "full" / "seed-1" / "train" / "model.pt").stat().st_mtime_ns == before  # nothing retrained
    again = client.search_runs([experiment.experiment_id],
                               filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(again) == 4
