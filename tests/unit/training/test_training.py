"""VMAs training on a few synthetic token clips with tiny models: learning, exact resume, ablations."""

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from vmas.layout import checkpoint_dir, manifest_dir, model_path
from vmas.models.builders import build_vmas
from vmas.training.module import LossSettings, VMAsTraining, warmup_cosine
from vmas.training.train import train

CARD = 32  # codec.cardinality of the token_set fixture (tests/unit/conftest.py)


def _with(cfg, **train):
    return cfg.model_copy(update={"train": cfg.train.model_copy(update=train)})


def test_warmup_then_cosine():
    assert warmup_cosine(0, 4, 100, 0.1) == pytest.approx(0.25)
    assert warmup_cosine(3, 4, 100, 0.1) == pytest.approx(1.0)
    assert warmup_cosine(100, 4, 100, 0.1) == pytest.approx(0.1)


def test_loss_falls_when_overfitting_a_few_clips(token_set):
    cfg = _with(token_set, max_steps=60, checkpoint_every_n_steps=60)
    report = train(cfg, progress=False)
    losses = [r["train/ce"] for r in report["history"] if "train/ce" in r]
    assert len(losses) == 60 and np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5]), losses
    package = torch.load(model_path(cfg), weights_only=False)
    assert package["config"]["model"]["music_decoder"]["dim"] == 32 and "codebooks" in package["state_dict"]
    assert (model_path(cfg).parent / "training_curves.png").is_file()
    assert (checkpoint_dir(cfg, report["trained_on"]["fingerprint"]) / "last.ckpt").is_file()
    mtime = model_path(cfg).stat().st_mtime_ns
    assert train(cfg, progress=False)["steps"] == 60  # already done: nothing trained, nothing rewritten
    assert model_path(cfg).stat().st_mtime_ns == mtime


@pytest.mark.parametrize("data", ["files", "shards"])
def test_resume_takes_exactly_the_steps_an_uninterrupted_run_takes(token_set, tmp_path, data):
    straight = _with(token_set, max_steps=6, checkpoint_every_n_steps=3, ema_decay=0.9)
    if data == "shards":  # 2 DataLoader workers; step 3 of 6 leaves the second worker's turn first
        from vmas.curation.shard import shard

        straight = _with(straight, data="shards", num_workers=2).model_copy(
            update={"shard": straight.shard.model_copy(update={"url": str(tmp_path / "shards"), "max_bytes": 30_000})})
        shard(straight, progress=False)
    whole = train(straight, progress=False, resume=False)
    resumed_cfg = straight.model_copy(update={"paths": straight.paths.model_copy(
        update={"artifacts_dir": tmp_path / "resumed"})})
    import shutil

    shutil.copytree(manifest_dir(straight, "tokenize"), manifest_dir(resumed_cfg, "tokenize"))
    train(resumed_cfg, progress=False, max_steps=3)  # a partial run: stops at step 3, like a killed one
    second = train(resumed_cfg, progress=False)  # finds last.ckpt (step 3) and goes on to 6
    assert second["resumed_from"] and second["steps"] == 6
    expected = {r["step"]: r["train/loss"] for r in whole["history"] if "train/loss" in r}
    got = {r["step"]: r["train/loss"] for r in second["history"] if "train/loss" in r}
    assert sorted(got) == [4, 5, 6]
    for step in got:
        assert got[step] == pytest.approx(expected[step], rel=1e-6, abs=1e-7), (step, got, expected)
    a = torch.load(model_path(straight), weights_only=False)["state_dict"]
    b = torch.load(model_path(resumed_cfg), weights_only=False)["state_dict"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)  # EMA weights too


class _Batch:
    @staticmethod
    def of(cfg):
        torch.manual_seed(3)
        codes = torch.randint(0, CARD, (3, 4, 40))
        weights = torch.full((3, 40), 0.5)
        weights[:, ::7] = 1.0
        return {"codes": codes, "beat_weights": weights,
                "frames": torch.randn(3, 3, cfg.video.frames, cfg.video.size, cfg.video.size)}


def _module(cfg, **losses):
    torch.manual_seed(0)
    model = build_vmas(cfg, torch.randn(4, CARD, 16))
    return VMAsTraining(model, LossSettings(**{"beat_weighting": True, "contrastive_weight": 0.1, **losses}))


def test_ablation_switches_change_exactly_their_term(token_set):
    batch = _Batch.of(token_set)
    keep = torch.ones(3, dtype=torch.bool)
    full = _module(token_set).losses(batch, keep)
    assert not torch.allclose(full["ce"], full["ce_plain"])  # beat weights matter here
    assert torch.allclose(full["loss"], full["ce"] + 0.1 * full["contrastive"]) and full["contrastive"] > 0

    no_beats = _module(token_set, beat_weighting=False).losses(batch, keep)
    assert torch.allclose(no_beats["ce"], full["ce_plain"]) and torch.allclose(no_beats["contrastive"], full["contrastive"])

    module = _module(token_set, contrastive_weight=0.0)
    no_contrast = module.losses(batch, keep)
    assert torch.allclose(no_contrast["loss"], full["ce"]) and no_contrast["contrastive"] == 0
    no_contrast["loss"].backward()
    heads = [p.grad for p in (*module.model.music_head.parameters(), *module.model.video_head.parameters())]
    assert all(g is None or not g.any() for g in heads)  # the contrastive heads get nothing


def test_dropped_video_is_the_unconditional_model(token_set):
    module = _module(token_set).eval()
    batch = _Batch.of(token_set)
    dropped = torch.zeros(3, dtype=torch.bool)
    a = module.model(batch["codes"], batch["frames"], keep=dropped).logits
    b = module.model(batch["codes"], torch.randn_like(batch["frames"]), keep=dropped).logits
    assert torch.equal(a.nan_to_num(), b.nan_to_num())  # no video information gets through


class _Recorder(Callback):
    def __init__(self):
        self.steps = []

    def on_train_batch_end(self, trainer, *args):
        self.steps.append(trainer.global_step)


def test_extra_callbacks_are_called(token_set):
    recorder = _Recorder()
    train(_with(token_set, max_steps=2), progress=False, callbacks=[recorder])
    assert recorder.steps == [1, 2]


def test_new_data_or_settings_start_afresh_and_the_same_ones_are_done(token_set):
    import csv

    from vmas.layout import output_dir
    from vmas.training.reports import CURVE_FILE
    from vmas.training.train import training_data

    cfg = _with(token_set, max_steps=4, checkpoint_every_n_steps=2)
    first = train(cfg, progress=False)
    assert train(cfg, progress=False) == first  # same clips, same settings: nothing to do
    changed = _with(cfg, lr=cfg.train.lr * 2)
    second = train(changed, progress=False)
    assert second["resumed_from"] is None and second["steps"] == 4
    assert second["trained_on"]["fingerprint"] != first["trained_on"]["fingerprint"]
    for run in (first, second):  # each run's checkpoints in the folder of its fingerprint
        assert (checkpoint_dir(cfg, run["trained_on"]["fingerprint"]) / "last.ckpt").is_file()
    sha = first["codec_sha256"]
    runtime = _with(changed, val_every_n_steps=1, checkpoint_every_n_steps=1, num_workers=1)
    assert training_data(runtime, sha) == training_data(changed, sha) == second["trained_on"]
    with open(output_dir(cfg, "train") / CURVE_FILE) as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [1, 2, 3, 4]


def test_a_resumed_run_keeps_the_curve_of_the_steps_before(token_set):
    import csv

    from vmas.layout import output_dir
    from vmas.training.reports import CURVE_FILE

    cfg = _with(token_set, max_steps=4, checkpoint_every_n_steps=2)
    train(cfg, progress=False, max_steps=2)
    train(cfg, progress=False)
    with open(output_dir(cfg, "train") / CURVE_FILE) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4] and all(r["train_loss"] for r in rows)


@pytest.mark.slow
def test_torchrun_with_ddp_trains_as_the_cluster_job_does(token_set, tmp_path):
    """The cluster's command (torchrun --module vmas.cli.main train, train.devices x train.num_nodes =
    the world size torchrun gives) with 2 processes on CPU: Lightning takes ranks from torchrun's env."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from vmas.layout import output_dir

    config = tmp_path / "params.yaml"
    config.write_text(_with(token_set, max_steps=4, checkpoint_every_n_steps=2).to_yaml())
    torchrun = str(Path(sys.executable).parent / "torchrun")
    result = subprocess.run([torchrun, "--nproc-per-node=2", "--module", "vmas.cli.main", "train", "--no-progress",
                             "--no-track", f"--config={config}", "--set=train.strategy=ddp", "--set=train.devices=2",
                             "--set=train.num_nodes=1"], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((output_dir(token_set, "train") / "report.json").read_text())
    assert report["steps"] == 4 and model_path(token_set).is_file()
