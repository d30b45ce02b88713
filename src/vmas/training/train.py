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
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, DeviceStatsMonitor, EMAWeightAveraging, ModelCheckpoint

from vmas.config import Config
from vmas.curation.stage import StageError
from vmas.data.tokens import DataSettings, TokenDataModule
from vmas.io import atomic_path, atomic_write_json
from vmas.models.builders import build_vmas
from vmas.run_logging import dvc_data_version, flatten, log_artifacts, set_tags
from vmas.training.module import LossSettings, OptimSettings, VMAsTraining

log = logging.getLogger(__name__)

NAME = "train"


def output_dir(cfg: Config) -> Path:
    return Path(cfg.paths.artifacts_dir) / NAME


def model_path(cfg: Config, out: Path | None = None) -> Path:
    """The final weights in ``out`` (default ``<artifacts>/train``)."""
    return (Path(out) if out is not None else output_dir(cfg)) / "model.pt"


def resolve_precision(setting: str) -> str:
    """``auto``: bf16 mixed precision on a GPU that has it, else full fp32."""
    if setting != "auto":
        return setting if setting != "32" else "32-true"
    return "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "32-true"


class History(Callback):
    """Keeps every logged train/val scalar with its step, for the report and the training-curve plot."""

    def __init__(self):
        self.rows: list[dict] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if (batch_idx + 1) % trainer.accumulate_grad_batches == 0:
            row = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")}
            self.rows.append({"step": int(trainer.global_step), **row})

    def on_validation_end(self, trainer, pl_module) -> None:
        row = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        if row and not trainer.sanity_checking:
            self.rows.append({"step": int(trainer.global_step), **row})


def _codec_path(cfg: Config) -> Path:
    """The codec the tokens were made with (its codebooks feed the contrastive loss)."""
    from vmas.codec.train_codec import resolve_codec_path

    path = resolve_codec_path(cfg)
    if path is None:
        raise StageError("train: no codec (codec.pretrained is null and no demo codec was trained); run `vmas curate`")
    return path


# train.* keys that change how a run is executed or observed, not what it learns
RUNTIME_KEYS = {"val_every_n_steps", "checkpoint_every_n_steps", "num_workers", "strategy", "devices", "num_nodes",
                "accelerator"}
KEEP_RUNS = 2  # checkpoint folders kept: this run's and the one before


def usable_clips(cfg: Config) -> list[dict]:
    """``{"id", "key", "codec_sha256"}`` of every usable clip in the tokenize manifest, by id: what a
    model trains on (one pass over the manifest)."""
    from vmas.curation.runner import manifest_dir
    from vmas.manifest import Manifest

    rows = Manifest(manifest_dir(cfg, "tokenize")).iter_rows(["id", "key", "codec_sha256", "error"])
    return sorted(({k: r[k] for k in ("id", "key", "codec_sha256")} for r in rows if r["error"] is None),
                  key=lambda r: r["id"])


def training_data(cfg: Config, codec_sha: str, clips: list[dict] | None = None) -> dict:
    """What a model is trained on: ``{"clips", "fingerprint"}``; the fingerprint covers every usable
    clip's id and key (``clips``, default :func:`usable_clips`), the codec and the settings that
    change the result (not the runtime ones).

    Checkpoints live in a folder named by the fingerprint, so new curated data (the retraining
    schedule) or a changed ``train.lr`` starts afresh instead of resuming, or being skipped as done,
    on another run's checkpoints; and every rank of a distributed run picks the same folder.
    """
    from vmas.manifest import content_key

    clips = usable_clips(cfg) if clips is None else clips
    keys = [(c["id"], c["key"]) for c in clips]
    settings = {"train": cfg.train.model_dump(mode="json", exclude=RUNTIME_KEYS), "model": cfg.model.model_dump(mode="json"),
                "video": cfg.video.model_dump(mode="json"), "clip": cfg.clip.model_dump(mode="json")}
    return {"clips": len(keys), "fingerprint": content_key(NAME, keys, settings, codec_sha)}


def checkpoint_dir(cfg: Config, fingerprint: str, out: Path | None = None) -> Path:
    """``<out>/checkpoints/<fingerprint>/`` (``out`` default ``<artifacts>/train``): the checkpoints of one
    data set and settings."""
    return (Path(out) if out is not None else output_dir(cfg)) / "checkpoints" / fingerprint


def _prune_checkpoint_dirs(current: Path) -> None:
    """Keep the newest ``KEEP_RUNS`` checkpoint folders (``current`` among them); older runs go."""
    import shutil

    others = sorted((d for d in current.parent.iterdir() if d.is_dir() and d != current),
                    key=lambda d: d.stat().st_mtime, reverse=True)
    for old in others[KEEP_RUNS - 1:]:
        log.info("train: removing the checkpoints of an older run, %s", old)
        shutil.rmtree(old, ignore_errors=True)


def train(cfg: Config, logger=None, resume: bool = True, progress: bool = True, max_steps: int | None = None,
          callbacks: list[Callback] | None = None, out: Path | None = None) -> dict:
    """Train (or resume training) VMAs per ``cfg.train``; returns a report (also ``report.json``).

    ``max_steps`` stops early (a partial run; the schedule still spans ``train.max_steps``, so a
    resumed run continues exactly). ``callbacks`` are added to Lightning's (e.g. an orchestrator's).
    ``out`` replaces ``<artifacts>/train`` (the ablation keeps one folder per variant and seed).
    """
    from vmas.codec import load_codec
    from vmas.curation.runner import manifest_dir
    from vmas.curation.tokenize import file_sha256

    t = cfg.train
    steps = min(max_steps or t.max_steps, t.max_steps)
    out = Path(out) if out is not None else output_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    final = model_path(cfg, out)
    codec_path = _codec_path(cfg)
    codec_sha = file_sha256(codec_path)
    clips = usable_clips(cfg)
    if {c["codec_sha256"] for c in clips} - {codec_sha}:
        raise StageError(f"train: some tokens were made with another codec than {codec_path}; run `vmas tokenize`")
    trained_on = training_data(cfg, codec_sha, clips)
    checkpoints_dir = checkpoint_dir(cfg, trained_on["fingerprint"], out)
    last = checkpoints_dir / "last.ckpt"
    ckpt = str(last) if resume and last.is_file() else None
    done = _checkpoint_step(last) if ckpt else 0
    previous = json.loads((out / "report.json").read_text()) if (out / "report.json").is_file() else {}
    if done >= steps and final.is_file() and previous.get("trained_on") == trained_on:
        log.info("train: %s is already at step %d of %d on the same data and settings; nothing to do", last, done, steps)
        return previous
    L.seed_everything(t.seed, workers=True, verbose=False)
    codec = load_codec(codec_path)

    model = build_vmas(cfg, codec.codebook_embeddings())
    module = VMAsTraining(model, LossSettings(t.beat_weighting, t.contrastive_weight, cfg.model.temperature),
                          OptimSettings(t.lr, t.weight_decay, t.warmup_steps, t.max_steps), seed=t.seed)
    data = TokenDataModule(DataSettings(manifest_dir(cfg, "tokenize"), cfg.video.frames, cfg.video.size,
                                        t.batch_size, steps, t.accumulate_grad_batches, t.val_share,
                                        t.num_workers, t.seed, t.split_seed))
    data.setup()
    history = History()
    checkpoints = ModelCheckpoint(dirpath=checkpoints_dir, filename="step-{step}", every_n_train_steps=
                                  t.checkpoint_every_n_steps, save_top_k=-1, save_last=True, auto_insert_metric_name=False)
    callbacks = [checkpoints, history, *(callbacks or [])]
    if t.ema_decay > 0:
        callbacks.append(EMAWeightAveraging(decay=t.ema_decay))
    if logger is not None:
        callbacks.append(DeviceStatsMonitor(cpu_stats=True))
    batches = max(steps - done, 1) * t.accumulate_grad_batches  # what the resumed loader still yields
    trainer = L.Trainer(
        max_steps=steps, accelerator=t.accelerator, devices=_devices(t.devices), num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=resolve_precision(t.precision), gradient_clip_val=t.gradient_clip or None,
        accumulate_grad_batches=t.accumulate_grad_batches, logger=logger if logger is not None else False,
        callbacks=callbacks, enable_progress_bar=progress, enable_model_summary=False, num_sanity_val_steps=0,
        val_check_interval=min(t.val_every_n_steps * t.accumulate_grad_batches, batches),
        check_val_every_n_epoch=None, log_every_n_steps=min(10, steps), default_root_dir=str(out),
        use_distributed_sampler=False, limit_val_batches=1.0 if data.val_rows else 0)
    if logger is not None:
        logger.log_hyperparams(flatten(cfg.model_dump(mode="json")))
        set_tags(logger, {"dvc.data_md5": dvc_data_version(), "codec_sha256": codec_sha, "stage": NAME,
                          "resumed_from": ckpt})
    log.info("train: %d clips (%d held out), %d steps on %s%s", len(data.train_rows), len(data.val_rows), steps,
             trainer.accelerator.__class__.__name__, f", resuming from {ckpt}" if ckpt else "")
    started = time.perf_counter()
    trainer.fit(module, datamodule=data, ckpt_path=ckpt)
    seconds = time.perf_counter() - started

    report = {"stage": NAME, "steps": int(trainer.global_step), "trained_on": trained_on,
              "train_clips": len(data.train_rows),
              "val_clips": len(data.val_rows), "clips": len(data.train_rows) + len(data.val_rows), "seconds": round(seconds, 1),
              "parameters": sum(p.numel() for p in model.parameters()), "codec": str(codec_path),
              "codec_sha256": codec_sha, "resumed_from": ckpt, "ema_decay": t.ema_decay,
              "final": {k: float(v) for k, v in trainer.callback_metrics.items()},
              "run_id": logger.run_id if logger is not None else None, "history": history.rows}
    if trainer.is_global_zero:
        save_model(module.model, cfg, codec_path, codec_sha, final, trained_on)
        plots = _plot(history.rows, out)
        _write_curve(history.rows, out / CURVE_FILE, resumed_at=done if ckpt else None)
        atomic_write_json(out / "report.json", report)
        _prune_checkpoint_dirs(checkpoints_dir)
        log_artifacts(logger, [out / "report.json", *plots], NAME)
        log.info("train: %d steps in %.0f s; final weights %s", report["steps"], seconds, final)
    return report


def _checkpoint_step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=False, mmap=True).get("global_step", 0))


def _devices(setting: str):
    if setting == "auto":
        return "auto"
    return int(setting) if setting.isdigit() else setting


def save_model(model: torch.nn.Module, cfg: Config, codec_path: Path, codec_sha: str, path: Path,
               trained_on: dict | None = None) -> None:
    """The final weights with what is needed to use them: ``{"state_dict", "config", "codec", "codec_sha256",
    "trained_on"}`` (``trained_on``: the clip count and data fingerprint, see :func:`training_data`).

    Saved through a buffer: ``torch.save`` to a file names the archive after the (temporary) file,
    so the same weights would hash differently on every save; the registry and ``vmas evaluate``
    name a model by its file hash.
    """
    import io

    package = {"state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
               "config": cfg.model_dump(mode="json"), "codec": str(codec_path), "codec_sha256": codec_sha,
               "trained_on": trained_on}
    buffer = io.BytesIO()
    torch.save(package, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


CURVE_FILE = "training_curve.csv"  # one row per logged step: what `dvc plots show` draws
CURVE_COLUMNS = ("step", "train/loss", "train/ce", "train/contrastive", "val/ce", "val/contrastive")


def _write_curve(rows: list[dict], path: Path, resumed_at: int | None) -> None:
    """The losses by step as CSV; a resumed run keeps the earlier steps of the file it continues."""
    import csv
    import io

    by_step: dict[int, dict] = {}
    if resumed_at is not None and path.is_file():
        for row in csv.DictReader(path.open()):
            if int(row["step"]) <= resumed_at:
                by_step[int(row["step"])] = {k: v for k, v in row.items() if v != ""}
    for row in rows:
        by_step.setdefault(row["step"], {}).update(row)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=[c.replace("/", "_") for c in CURVE_COLUMNS], extrasaction="ignore")
    writer.writeheader()
    for step in sorted(by_step):
        writer.writerow({k.replace("/", "_"): v for k, v in by_step[step].items()})
    with atomic_path(path) as tmp:
        tmp.write_text(text.getvalue())


def _plot(rows: list[dict], out: Path) -> list[Path]:
    from vmas.plots import training_curves

    train_rows = [r for r in rows if "train/loss" in r]
    if not train_rows:
        return []
    keys = [k for k in ("train/loss", "train/ce", "train/contrastive") if k in train_rows[0]]
    paths = [training_curves(train_rows, keys, out / "training_curves.png", title="VMAs training")]
    val_rows = [r for r in rows if "val/ce" in r]
    if val_rows:
        paths.append(training_curves(val_rows, ["val/ce", "val/contrastive"], out / "validation_curves.png",
                                     title="held-out videos", smooth=1))
    return paths
