"""train: fit VMAs on the tokenize manifest with Lightning; checkpoints resume exactly.

Outputs under ``<artifacts>/train/``: ``checkpoints/<fingerprint>/`` (Lightning, every
``train.checkpoint_every_n_steps`` and ``last.ckpt``), ``model.pt`` (the final weights, EMA when
enabled, with the resolved config and the codec they belong to: what evaluate and generate
load), ``training_curves.png``, ``training_curve.csv`` and ``report.json``. A run finds
``last.ckpt`` of its data and settings and resumes from it unless told not to (other data or
settings start afresh: see :func:`training_data`); under torchrun or a cluster launcher, Lightning
reads the ranks from the environment (``train.strategy: ddp`` or ``fsdp``).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, DeviceStatsMonitor, EMAWeightAveraging, ModelCheckpoint

from vmas.codec import load_codec
from vmas.codec.loading import resolve_codec_path
from vmas.config import Config
from vmas.data.tokens import DataSettings, TokenDataModule, usable_clips
from vmas.devices import resolve_precision
from vmas.errors import StageError
from vmas.io import atomic_write_json, file_sha256
from vmas.layout import checkpoint_dir, model_path, output_dir, shard_url
from vmas.manifest import content_key
from vmas.models.builders import build_vmas
from vmas.models.package import save_model
from vmas.run_logging import dvc_data_version, flatten, log_artifacts, set_tags
from vmas.training.module import LossSettings, OptimSettings, VMAsTraining
from vmas.training.reports import CURVE_FILE, History, plot_curves, write_curve

log = logging.getLogger(__name__)

NAME = "train"


def _codec_path(cfg: Config) -> Path:
    """The codec the tokens were made with (its codebooks feed the contrastive loss)."""
    path = resolve_codec_path(cfg)
    if path is None:
        raise StageError("train: no codec (codec.pretrained is null and no demo codec was trained); run `vmas curate`")
    return path


# train.* keys that change how a run is executed or observed, not what it learns
# (The batch order depends on the ranks and DataLoader workers, vmas.data.stream: resuming is exact with the
# same counts; with others the run goes on, but not with the batches an uninterrupted run would have had.)
RUNTIME_KEYS = {"val_every_n_steps", "checkpoint_every_n_steps", "num_workers", "strategy", "devices", "num_nodes",
                "accelerator", "shards", "corrupt_shards"}
KEEP_RUNS = 2  # checkpoint folders kept: this run's and the one before


def training_data(cfg: Config, codec_sha: str, clips: list[dict] | None = None) -> dict:
    """What a model is trained on: ``{"clips", "fingerprint"}``; the fingerprint covers every usable
    clip's id and key (``clips``, default :func:`vmas.data.tokens.usable_clips`), the codec and the settings that
    change the result (not the runtime ones).

    Checkpoints live in a folder named by the fingerprint, so new curated data (the retraining
    schedule) or a changed ``train.lr`` starts afresh instead of resuming, or being skipped as done,
    on another run's checkpoints; and every rank of a distributed run picks the same folder.
    """
    clips = usable_clips(cfg) if clips is None else clips
    keys = [(c["id"], c["key"]) for c in clips]
    settings = {"train": cfg.train.model_dump(mode="json", exclude=RUNTIME_KEYS), "model": cfg.model.model_dump(mode="json"),
                "video": cfg.video.model_dump(mode="json"), "clip": cfg.clip.model_dump(mode="json")}
    count = sum(c.get("clips", 1) for c in clips)  # a shard entry stands for its clips
    return {"clips": count, "fingerprint": content_key(NAME, keys, settings, codec_sha)}


def _prune_checkpoint_dirs(current: Path) -> None:
    """Keep the newest ``KEEP_RUNS`` checkpoint folders (``current`` among them); older runs go."""
    others = sorted((d for d in current.parent.iterdir() if d.is_dir() and d != current),
                    key=lambda d: d.stat().st_mtime, reverse=True)
    for old in others[KEEP_RUNS - 1:]:
        log.info("train: removing the checkpoints of an older run, %s", old)
        shutil.rmtree(old, ignore_errors=True)


@dataclass(frozen=True)
class RunPlan:
    """Where a run stands before it starts: its codec, its data, its checkpoint folder and what is done."""

    codec_path: Path
    codec_sha: str
    trained_on: dict  # {"clips", "fingerprint"}: see training_data
    checkpoints: Path  # <out>/checkpoints/<fingerprint>/
    resume_from: str | None  # last.ckpt of this data and settings, when resuming
    done_steps: int  # the step resume_from is at (0 without)


def _shard_clips(cfg: Config) -> list[dict]:
    """The shard index as ``training_data`` takes clips: one entry per shard (its path and sha256 as
    id and key, its clip count), so the fingerprint follows the shards' contents without reading
    millions of rows."""
    from vmas.data.shards import read_shard_index

    url = cfg.train.shards or shard_url(cfg)
    entries = read_shard_index(url)
    return [{"id": e.url[len(url):].lstrip("/"), "key": e.sha256, "codec_sha256": e.codec_sha256, "clips": e.clips}
            for e in entries]


def plan_run(cfg: Config, out: Path, resume: bool) -> RunPlan:
    """The codec the tokens were made with, the data's fingerprint, and the checkpoint to resume from."""
    codec_path = _codec_path(cfg)
    codec_sha = file_sha256(codec_path)
    clips = _shard_clips(cfg) if cfg.train.data == "shards" else usable_clips(cfg)
    if {sha for c in clips for sha in c["codec_sha256"].split(",")} - {codec_sha}:  # a shard: "a,b" when mixed
        again = "`vmas tokenize` and `vmas shard`" if cfg.train.data == "shards" else "`vmas tokenize`"
        raise StageError(f"train: some tokens were made with another codec than {codec_path}; run {again}")
    trained_on = training_data(cfg, codec_sha, clips)
    checkpoints = checkpoint_dir(cfg, trained_on["fingerprint"], out)
    last = checkpoints / "last.ckpt"
    resume_from = str(last) if resume and last.is_file() else None
    return RunPlan(codec_path, codec_sha, trained_on, checkpoints, resume_from,
                   _checkpoint_step(last) if resume_from else 0)


def train(cfg: Config, logger=None, resume: bool = True, progress: bool = True, max_steps: int | None = None,
          callbacks: list[Callback] | None = None, out: Path | None = None) -> dict:
    """Train (or resume training) VMAs per ``cfg.train``; returns a report (also ``report.json``).

    ``max_steps`` stops early (a partial run; the schedule still spans ``train.max_steps``, so a
    resumed run continues exactly). ``callbacks`` are added to Lightning's (e.g. an orchestrator's).
    ``out`` replaces ``<artifacts>/train`` (the ablation keeps one folder per variant and seed).
    """
    t = cfg.train
    steps = min(max_steps or t.max_steps, t.max_steps)
    out = Path(out) if out is not None else output_dir(cfg, NAME)
    out.mkdir(parents=True, exist_ok=True)
    plan = plan_run(cfg, out, resume)
    previous = json.loads((out / "report.json").read_text()) if (out / "report.json").is_file() else {}
    if plan.done_steps >= steps and model_path(cfg, out).is_file() and previous.get("trained_on") == plan.trained_on:
        log.info("train: %s is already at step %d of %d on the same data and settings; nothing to do",
                 plan.resume_from, plan.done_steps, steps)
        return previous
    L.seed_everything(t.seed, workers=True, verbose=False)
    module = VMAsTraining(build_vmas(cfg, load_codec(plan.codec_path).codebook_embeddings()),
                          LossSettings(t.beat_weighting, t.contrastive_weight, cfg.model.temperature),
                          OptimSettings(t.lr, t.weight_decay, t.warmup_steps, t.max_steps), seed=t.seed)
    data = TokenDataModule(DataSettings.from_config(cfg, steps))
    data.setup()
    history = History()
    trainer = _trainer(cfg, steps, plan, out, [history, *(callbacks or [])], logger, progress, bool(data.val_clips))
    if logger is not None:
        logger.log_hyperparams(flatten(cfg.model_dump(mode="json")))
        set_tags(logger, {"dvc.data_md5": dvc_data_version(), "codec_sha256": plan.codec_sha, "stage": NAME,
                          "resumed_from": plan.resume_from})
    log.info("train: %d clips (%d held out) from %s, %d steps on %s%s", data.train_clips, data.val_clips,
             "shards at " + data.settings.shards if t.data == "shards" else "per-clip files", steps,
             trainer.accelerator.__class__.__name__, f", resuming from {plan.resume_from}" if plan.resume_from else "")
    started = time.perf_counter()
    trainer.fit(module, datamodule=data, ckpt_path=plan.resume_from)
    seconds = time.perf_counter() - started

    report = {"stage": NAME, "steps": int(trainer.global_step), "trained_on": plan.trained_on,
              "train_clips": data.train_clips, "val_clips": data.val_clips, "data": t.data,
              "clips": data.train_clips + data.val_clips, "seconds": round(seconds, 1),
              "parameters": sum(p.numel() for p in module.model.parameters()), "codec": str(plan.codec_path),
              "codec_sha256": plan.codec_sha, "resumed_from": plan.resume_from, "ema_decay": t.ema_decay,
              "final": {k: float(v) for k, v in trainer.callback_metrics.items()},
              "run_id": logger.run_id if logger is not None else None, "history": history.rows}
    if trainer.is_global_zero:
        _write_outputs(cfg, module, plan, report, out, logger)
    return report


def _trainer(cfg: Config, steps: int, plan: RunPlan, out: Path, callbacks: list[Callback], logger, progress: bool,
             validate: bool) -> L.Trainer:
    """Lightning's Trainer for this run: checkpoints every ``train.checkpoint_every_n_steps`` into the
    run's folder, EMA when ``train.ema_decay`` > 0, device stats when tracked and ``tracking.device_stats``
    (off by default: a dozen metrics on every run), validation on held-out
    videos every ``train.val_every_n_steps``."""
    t = cfg.train
    callbacks = [ModelCheckpoint(dirpath=plan.checkpoints, filename="step-{step}", every_n_train_steps=
                                 t.checkpoint_every_n_steps, save_top_k=-1, save_last=True,
                                 auto_insert_metric_name=False), *callbacks]
    if t.ema_decay > 0:
        callbacks.append(EMAWeightAveraging(decay=t.ema_decay))
    if logger is not None and cfg.tracking.device_stats:
        callbacks.append(DeviceStatsMonitor(cpu_stats=True))
    batches = max(steps - plan.done_steps, 1) * t.accumulate_grad_batches  # what the resumed loader still yields
    return L.Trainer(
        max_steps=steps, accelerator=t.accelerator, devices=_devices(t.devices), num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=resolve_precision(t.precision), gradient_clip_val=t.gradient_clip or None,
        accumulate_grad_batches=t.accumulate_grad_batches, logger=logger if logger is not None else False,
        callbacks=callbacks, enable_progress_bar=progress, enable_model_summary=False, num_sanity_val_steps=0,
        val_check_interval=min(t.val_every_n_steps * t.accumulate_grad_batches, batches),
        check_val_every_n_epoch=None, log_every_n_steps=min(10, steps), default_root_dir=str(out),
        use_distributed_sampler=False, limit_val_batches=1.0 if validate else 0)


def _write_outputs(cfg: Config, module: VMAsTraining, plan: RunPlan, report: dict, out: Path, logger) -> None:
    """On rank 0: the model file, the curves (CSV and plots), ``report.json``, and older runs' checkpoints pruned.
    The run is tagged with the model file's sha256: ``vmas register`` finds the training run of a model by it."""
    final = model_path(cfg, out)
    save_model(module.model, cfg, plan.codec_path, plan.codec_sha, final, plan.trained_on)
    set_tags(logger, {"model_sha256": file_sha256(final)})
    plots = plot_curves(report["history"], out)
    write_curve(report["history"], out / CURVE_FILE, resumed_at=plan.done_steps if plan.resume_from else None)
    atomic_write_json(out / "report.json", report)
    _prune_checkpoint_dirs(plan.checkpoints)
    log_artifacts(logger, [out / "report.json", *plots], NAME)
    log.info("train: %d steps in %.0f s; final weights %s", report["steps"], report["seconds"], final)


def _checkpoint_step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=False, mmap=True).get("global_step", 0))


def _devices(setting: str):
    if setting == "auto":
        return "auto"
    return int(setting) if setting.isdigit() else setting
