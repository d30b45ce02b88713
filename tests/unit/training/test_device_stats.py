"""Device stats: Lightning's DeviceStatsMonitor joins a tracked training run only when
``tracking.device_stats`` asks for it (off by default: a dozen metrics on every run)."""

from lightning.pytorch.callbacks import DeviceStatsMonitor

from vmas.config import load_config
from vmas.tracking.runs import mlflow_logger
from vmas.training.train import RunPlan, _trainer


def _monitors(repo, tmp_path, *overrides: str, tracked: bool = True) -> list:
    cfg = load_config(repo / "configs" / "demo.yaml", overrides=[f"paths.artifacts_dir={tmp_path}",
                                                                 "train.accelerator=cpu", "train.devices=1", *overrides])
    plan = RunPlan(codec_path=tmp_path / "codec.bin", codec_sha="0" * 64, trained_on={"clips": 0, "fingerprint": "f"},
                   checkpoints=tmp_path / "checkpoints", resume_from=None, done_steps=0)
    logger = mlflow_logger(cfg, "train") if tracked else None  # a real MLflow store in tmp_path; no run opened yet
    trainer = _trainer(cfg, 4, plan, tmp_path, [], logger, progress=False, validate=False)
    return [c for c in trainer.callbacks if isinstance(c, DeviceStatsMonitor)]


def test_device_stats_are_off_by_default(repo, tmp_path):
    assert load_config(repo / "configs" / "demo.yaml").tracking.device_stats is False
    assert load_config(repo / "configs" / "paper.yaml").tracking.device_stats is False
    assert _monitors(repo, tmp_path) == []


def test_device_stats_on_log_cpu_stats_on_tracked_runs_only(repo, tmp_path):
    [monitor] = _monitors(repo, tmp_path, "tracking.device_stats=true")
    assert monitor._cpu_stats is True
    assert _monitors(repo, tmp_path, "tracking.device_stats=true", tracked=False) == []  # nothing to log them to
