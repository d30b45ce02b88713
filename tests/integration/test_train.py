"""`vmas train` on the embedded demo's tokens, as a user runs it: a checkpoint, weights, an MLflow run, resume."""

import json

import mlflow
import pytest
import torch

from vmas.layout import checkpoint_dir, model_path
from vmas.layout import output_dir
from vmas.tracking.runs import tracking_uri

pytestmark = pytest.mark.slow


def test_train_leaves_weights_checkpoints_and_curves(trained):
    cfg, report = trained
    assert report["steps"] == 12 and report["train_clips"] > report["val_clips"] > 0
    package = torch.load(model_path(cfg), weights_only=False)
    assert package["codec_sha256"] == report["codec_sha256"] and package["config"]["profile"] == "demo"
    checkpoints = {p.name for p in checkpoint_dir(cfg, report["trained_on"]["fingerprint"]).iterdir()}
    assert {"last.ckpt", "step-6.ckpt", "step-12.ckpt"} <= checkpoints
    assert (output_dir(cfg, "train") / "training_curves.png").is_file() and (output_dir(cfg, "train") / "validation_curves.png").is_file()
    assert all(torch.isfinite(torch.tensor(r["train/loss"])) for r in report["history"] if "train/loss" in r)


def test_the_run_is_in_mlflow_with_config_and_metrics_and_no_device_stats_by_default(trained):
    cfg, report = trained
    client = mlflow.tracking.MlflowClient(tracking_uri(cfg))
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.mlflow.runName = 'train'")
    run = runs[-1]  # the first (oldest) train run
    assert run.data.params["model.music_decoder.dim"] == str(cfg.model.music_decoder.dim)
    assert run.data.params["train.contrastive_weight"] == str(cfg.train.contrastive_weight)
    assert run.data.tags["codec_sha256"] == report["codec_sha256"]
    assert "val/ce" in run.data.metrics and "train/loss" in run.data.metrics
    assert not cfg.tracking.device_stats  # tracking.device_stats: true adds Lightning's DeviceStatsMonitor
    assert not any(k.startswith("DeviceStatsMonitor") or "cpu_percent" in k for k in run.data.metrics), run.data.metrics
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "train")}
    assert "train/training_curves.png" in logged and "train/report.json" in logged


def test_a_second_run_resumes_from_the_last_checkpoint(trained, repo, train_demo):
    cfg, first = trained
    second = train_demo(cfg, repo, "--max-steps", "14", "--set", "train.val_every_n_steps=6",
                    "--set", "train.checkpoint_every_n_steps=6")
    assert second["resumed_from"].endswith("last.ckpt") and second["steps"] == 14
    history = json.loads((output_dir(cfg, "train") / "report.json").read_text())["history"]
    assert [r["step"] for r in history if "train/loss" in r] == [13, 14]
