"""evaluate: music generated for the clips training held out, and how good it is.

The held-out clips are the validation videos of the model's own training run (the same
``split_by_video(val_share, split_seed)`` of its training config), so no evaluated video was trained
on. For each clip the model generates music as long as the clip from its training video; then

- MV-Align of the generated music (and of the clip's real music, the reference level, and of the
  real music decoded from its tokens, the codec's ceiling) against
  the motion peaks of the source video over the clip's span, at the video's own frame rate;
- FAD between embeddings of generated (and codec-decoded) and real music, and KL between their tag distributions,
  with the embedder named by ``evaluate.embedding`` (the bundled musicnn by default);
- MV-Align's chance level: each clip's music scored against the other videos' motion peaks
  (:func:`~vmas.evaluation.metrics.mv_align_chance`), for the generated and the real music;
- video -> music retrieval R@1 / R@10 with the model's own contrastive embeddings, exactly as
  training computes them (:meth:`vmas.models.VMAs.embeddings`: the music side is a decoder pass
  with the video nulled, so it depends on the music alone and cannot copy the answer from the video).

Outputs under ``<artifacts>/evaluate/``: ``metrics.json`` (flat numbers, DVC's metrics file),
``evaluation.json`` (settings, per-clip numbers, the embedding used), ``report.html`` with PNG
figures, and ``audio/<clip>.wav``. A rerun for the same model and settings computes nothing.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vmas import layout
from vmas.config import Config
from vmas.data.split import split_by_video
from vmas.data.tokens import load_frames
from vmas.devices import select_device
from vmas.errors import StageError
from vmas.evaluation.embeddings import load_embedder
from vmas.evaluation.metrics import (audio_peaks, fad, kl_divergence, mv_align, mv_align_chance, retrieval_recall,
                                     video_peaks)
from vmas.evaluation.report import write_report
from vmas.io import atomic_write_json, file_sha256
from vmas.layout import manifest_dir, output_dir
from vmas.manifest import Manifest
from vmas.media.audio import read_audio, write_wav
from vmas.media.motion import clip_motion
from vmas.models.builders import sampling_settings
from vmas.models.package import load_model_package
from vmas.models.sample import SamplingSettings, generate_codes
from vmas.plots import beat_alignment, spectrogram_pair
from vmas.run_logging import flatten, log_artifacts, set_tags

log = logging.getLogger(__name__)

NAME = "evaluate"
TOKEN_COLUMNS = ["id", "video_id", "tokens_path", "video_path", "audio_path", "error"]


def held_out_clips(cfg: Config, trained: Config) -> list[dict]:
    """Tokenized clips of the videos ``trained``'s run held out, with their source span, sorted by id."""

    tokens = Manifest(manifest_dir(cfg, "tokenize"))
    if not tokens.exists():
        raise StageError(f"{NAME}: no tokenize manifest under {manifest_dir(cfg, 'tokenize')}; run `vmas curate`")
    rows = [r for r in tokens.iter_rows(TOKEN_COLUMNS) if r["error"] is None]
    if trained.train.val_share <= 0 or len({r["video_id"] for r in rows}) < 2:
        raise StageError(f"{NAME}: the model was trained without held-out videos (train.val_share "
                         f"{trained.train.val_share}, {len({r['video_id'] for r in rows})} videos): nothing to evaluate on")
    _, held = split_by_video(rows, trained.train.val_share, trained.train.split_seed)
    held_ids = {h["id"] for h in held}
    spans = {r["id"]: r for r in Manifest(manifest_dir(cfg, "clip")).iter_rows(["id", "source_path", "start_s", "end_s"])
             if r["id"] in held_ids}
    clips = [{**r, **{k: spans[r["id"]][k] for k in ("source_path", "start_s", "end_s")}} for r in held if r["id"] in spans]
    clips.sort(key=lambda r: r["id"])
    limit = cfg.evaluate.max_clips
    return clips[:limit] if limit else clips


# a clip's motion, kept for the process (a few KB a clip): the ablation evaluates many models on the same clips
_held_out_motion = functools.lru_cache(maxsize=4096)(clip_motion)


def fingerprint(model_sha256: str, cfg: Config) -> str:
    """What the numbers depend on besides the data: the model and the evaluation and sampling settings."""
    return json.dumps({"model": model_sha256, "evaluate": cfg.evaluate.model_dump(mode="json"),
                       "generate": cfg.generate.model_dump(mode="json", exclude={"device", "batch_size", "precision"})},
                      sort_keys=True)


def evaluate(cfg: Config, model_path: str | Path | None = None, logger=None, champion: dict | None = None,
             progress: bool = True, out: Path | None = None) -> dict:
    """Generate for the held-out clips, score, report; returns ``evaluation.json``'s content.

    ``champion`` (``{"version", "metrics"}``, from the registry) is the column the report compares
    against; None when there is none yet. ``out`` replaces ``<artifacts>/evaluate``.
    """
    out = Path(out) if out is not None else output_dir(cfg, NAME)
    model_file = Path(model_path) if model_path is not None else layout.model_path(cfg)
    if not model_file.is_file():
        raise StageError(f"{NAME}: {model_file} does not exist; run `vmas train` first")
    fp = fingerprint(file_sha256(model_file), cfg)
    done = out / "evaluation.json"
    if done.is_file() and (out / "metrics.json").is_file() and json.loads(done.read_text()).get("fingerprint") == fp:
        result = json.loads(done.read_text())
        write_report(out / "report.html", result, champion)  # the champion may have changed
        log.info("%s: %s was already evaluated with these settings; report refreshed", NAME, model_file)
        return result

    started = time.perf_counter()
    result = _generate_and_score(cfg, model_file, out, select_device(cfg.generate.device, "generate.device"), progress)
    result.update(fingerprint=fp, seconds=round(time.perf_counter() - started, 1),
                  run_id=getattr(logger, "run_id", None) if logger is not None else None)
    atomic_write_json(out / "metrics.json", result["metrics"])
    atomic_write_json(done, result)
    write_report(out / "report.html", result, champion)
    if logger is not None:
        _log_run(logger, result, out)
    log.info("%s: %d clips in %.0f s: %s", NAME, result["clips"], result["seconds"],
             ", ".join(f"{k} {v:.3f}" for k, v in result["metrics"].items() if v is not None))
    return result


def _generate_and_score(cfg: Config, model_file: Path, out: Path, device: str, progress: bool) -> dict:
    """Generate for the held-out clips batch by batch, score each clip, then the set: ``evaluation.json``'s
    content less what :func:`evaluate` adds (fingerprint, time, run id)."""
    package = load_model_package(model_file, device=device)
    model, codec, trained = package.model, package.codec, package.config
    clips = held_out_clips(cfg, trained)
    if len(clips) < 2:
        raise StageError(f"{NAME}: {len(clips)} held-out clip(s); FAD and retrieval need at least 2")
    embedder = load_embedder(cfg.evaluate.embedding)
    g = cfg.generate
    settings = sampling_settings(g)
    generator = torch.Generator(device).manual_seed(g.seed)  # one stream for all batches, drawn in clip order
    (out / "audio").mkdir(parents=True, exist_ok=True)
    records: list[ClipScore] = []
    with tqdm(total=len(clips), desc=NAME, unit="clip", disable=not progress) as bar:
        for start in range(0, len(clips), g.batch_size):
            batch = generate_batch(model, codec, trained, clips[start : start + g.batch_size], settings,
                                   generator, device)
            for i in range(len(batch.clips)):
                plot = len(records) < cfg.evaluate.report_clips  # the report's figures: the first clips'
                records.append(score_clip(batch, i, embedder, cfg, out, plot))
                bar.update(1)
    return _result(records, metrics(records), package, model_file, embedder, settings, cfg, out, device)


@dataclass(frozen=True)
class GeneratedBatch:
    """A batch of held-out clips after generation: the sampled music and the clips' own tokens, both decoded,
    and the model's retrieval embeddings of the batch. Row ``i`` of each array belongs to ``clips[i]``."""

    clips: list[dict]
    sample_rate: int  # the codec's
    generated: np.ndarray  # [B, samples]: the codes the model sampled, decoded
    through_codec: np.ndarray  # [B, samples]: the clip's real codes, decoded (the codec's ceiling)
    music: np.ndarray  # [B, D]: the model's music embedding (a decoder pass with the video nulled)
    video: np.ndarray  # [B, D]: the model's video embedding


def generate_batch(model, codec, trained: Config, batch: list[dict], settings: SamplingSettings,
                   generator: torch.Generator, device: str) -> GeneratedBatch:
    """Sample codes for ``batch`` from its frames ``[B, 3, F, H, W]``, as long as its real codes ``[B, K, T]``;
    decode both; embed both sides for retrieval exactly as training does (:meth:`vmas.models.VMAs.embeddings`).

    ``generator`` is drawn from here only, so the music depends on the seed, the batch size and the clip order.
    """
    frames = torch.stack([load_frames(c["video_path"], trained.video.frames, trained.video.size) for c in batch])
    codes = torch.stack([torch.from_numpy(_codes(c["tokens_path"])) for c in batch])
    frames, codes = frames.to(device), codes.to(device)
    generated = generate_codes(model, frames, codes.shape[-1], settings, generator)
    with torch.no_grad():
        audio = codec.decode(generated)[:, 0].float().cpu().numpy()
        through_codec = codec.decode(codes)[:, 0].float().cpu().numpy()
        music, video = model.embeddings(codes, model.video_encoder(frames))
    return GeneratedBatch(batch, codec.sample_rate, audio, through_codec, music.float().cpu().numpy(),
                          video.float().cpu().numpy())


KINDS = ("gen", "ref", "codec")  # generated, the real music, the real music through the codec (its ceiling)


@dataclass(frozen=True)
class ClipScore:
    """What the set's metrics and the report need of one clip (no audio: that is in its wav).

    - ``row``: the clip's entry of ``per_clip``, its MV-Align numbers among them;
    - ``events``: onset times (s) of the generated (``gen``) and real (``ref``) music and the video's motion
      peaks (``video``), which MV-Align's chance level pairs across clips;
    - ``embeddings[kind]`` ``[W, D]`` and ``tags[kind]`` ``[C]`` (mean label probabilities over the windows,
      None without a tagger): the embedder's view of each of :data:`KINDS`, for FAD and KL;
    - ``music``, ``video`` ``[D]``: the model's retrieval embeddings;
    - ``figures``: the report's two PNGs, or none past ``evaluate.report_clips``.
    """

    row: dict
    events: dict[str, np.ndarray]
    embeddings: dict[str, np.ndarray]
    tags: dict[str, np.ndarray | None]
    music: np.ndarray
    video: np.ndarray
    figures: list[Path]


def score_clip(batch: GeneratedBatch, i: int, embedder, cfg: Config, out: Path, plot: bool) -> ClipScore:
    """Clip ``i`` of ``batch``: its music to ``audio/<clip>.wav``; MV-Align of the generated, real and
    codec-decoded music ``[samples]`` against the video's motion peaks over the clip's span, at the video's
    own frame rate; the embedder on all three; its figures when ``plot``."""
    clip, gen, coded, sr = batch.clips[i], batch.generated[i], batch.through_codec[i], batch.sample_rate
    ref = read_audio(clip["audio_path"], sample_rate=sr)[0][: len(gen)]
    ref = np.pad(ref, (0, len(gen) - len(ref)))  # the real music, as long as the generated
    wav = out / "audio" / f"{_flat(clip['id'])}.wav"
    write_wav(wav, gen / max(1.0, float(np.abs(gen).max())), sr)
    motion, fps = _held_out_motion(clip["source_path"], clip["start_s"], clip["end_s"], cfg.evaluate.flow_size)
    peaks = video_peaks(motion, fps, cfg.evaluate.motion_threshold)
    gen_onsets, ref_onsets, codec_onsets = audio_peaks(gen, sr), audio_peaks(ref, sr), audio_peaks(coded, sr)
    signals = {"gen": gen, "ref": ref, "codec": coded}
    embeddings, tags = {}, {}
    for kind in KINDS:
        embeddings[kind] = embedder.embed(signals[kind], sr)
        t = embedder.tags(signals[kind], sr)
        tags[kind] = t.mean(0) if t is not None else None
    row = {"id": clip["id"], "video_id": clip["video_id"], "audio": str(wav),
           "reference_audio": clip["audio_path"], "source_path": clip["source_path"],
           "start_s": clip["start_s"], "end_s": clip["end_s"],
           "mv_align": mv_align(gen_onsets, peaks, fps), "mv_align_reference": mv_align(ref_onsets, peaks, fps),
           "mv_align_codec": mv_align(codec_onsets, peaks, fps),
           "video_peaks": len(peaks), "onsets": len(gen_onsets), "reference_onsets": len(ref_onsets),
           "fps": fps}
    figures = _figures(out / "figures", clip["id"], ref, gen, sr, motion, fps, peaks, ref_onsets, gen_onsets) \
        if plot else []  # two a clip
    return ClipScore(row, {"gen": gen_onsets, "ref": ref_onsets, "video": peaks}, embeddings, tags,
                     batch.music[i], batch.video[i], figures)


def _windows(records: list[ClipScore], kind: str) -> np.ndarray:
    """The embedder's windows of ``kind`` over all clips, ``[sum W, D]``, in clip order."""
    return np.concatenate([r.embeddings[kind] for r in records])


def _tags(records: list[ClipScore], kind: str) -> list[np.ndarray]:
    """The clips' mean tags ``[C]`` of ``kind``, empty without a tagger."""
    return [r.tags[kind] for r in records if r.tags[kind] is not None]


def metrics(records: list[ClipScore]) -> dict:
    """The set's numbers (``metrics.json``): MV-Align means and chance levels, FAD and KL of the generated and
    the codec-decoded music against the real, and the model's video -> music retrieval R@1 / R@10 over the
    ``[N, D]`` embeddings (row ``i`` from clip ``i``). KL is None without a tagger; the keys' order is the file's."""
    rows = [r.row for r in records]
    recall = retrieval_recall(np.stack([r.video for r in records]), np.stack([r.music for r in records]), (1, 10))
    ref_emb = _windows(records, "ref")
    fps, groups = [r["fps"] for r in rows], [r["video_id"] for r in rows]
    events = {k: [r.events[k] for r in records] for k in ("gen", "ref", "video")}
    tags = {k: _tags(records, k) for k in KINDS}
    return {
        "mv_align": float(np.mean([r["mv_align"] for r in rows])),
        "mv_align_reference": float(np.mean([r["mv_align_reference"] for r in rows])),
        "mv_align_chance": mv_align_chance(events["gen"], events["video"], fps, groups),
        "mv_align_reference_chance": mv_align_chance(events["ref"], events["video"], fps, groups),
        "mv_align_codec": float(np.mean([r["mv_align_codec"] for r in rows])),
        "fad": fad(_windows(records, "gen"), ref_emb),
        "fad_codec": fad(_windows(records, "codec"), ref_emb),
        "kl": kl_divergence(np.stack(tags["ref"]), np.stack(tags["gen"])) if tags["gen"] else None,
        "kl_codec": kl_divergence(np.stack(tags["ref"]), np.stack(tags["codec"])) if tags["codec"] else None,
        "retrieval_r1": recall[1],
        "retrieval_r10": recall[10],
    }


def _result(records: list[ClipScore], scores: dict, package, model_file: Path, embedder, settings: SamplingSettings,
            cfg: Config, out: Path, device: str) -> dict:
    """``evaluation.json``'s content (keys in the file's order): the settings, what the numbers were computed
    with, the set's metrics and their chance levels, and the per-clip rows."""
    n = len(records)
    gen_windows, ref_windows = _windows(records, "gen"), _windows(records, "ref")
    return {"stage": NAME, "model": str(model_file), "model_sha256": package.sha256, "codec": str(package.codec_path),
            "clips": n, "videos": len({r.row["video_id"] for r in records}), "trained_on": package.trained_on,
            "embedding": embedder.name,
            "embedding_dim": int(gen_windows.shape[1]),
            "embedding_windows": [int(len(gen_windows)), int(len(ref_windows))],
            "tagger": embedder.name if _tags(records, "gen") else None,
            "sampling": {**settings.__dict__, "seed": cfg.generate.seed},
            "motion_threshold": cfg.evaluate.motion_threshold,
            "chance": {"retrieval_r1": 1 / n, "retrieval_r10": min(10 / n, 1.0), "mv_align": scores["mv_align_chance"]},
            "metrics": scores, "per_clip": [r.row for r in records],
            "figures": [str(p.relative_to(out)) for r in records for p in r.figures], "device": device}


def _codes(tokens_path: str) -> np.ndarray:
    """A clip's codes ``[K, T]`` as int64 (the file is closed before returning)."""
    with np.load(tokens_path) as npz:
        return npz["codes"].astype(np.int64)


def _figures(folder: Path, clip_id: str, ref, gen, sr, motion, fps, peaks, ref_onsets, gen_onsets) -> list[Path]:
    """A clip's two report figures: real vs generated spectrograms with their onsets, and the video's motion
    with its peaks against both musics' onsets."""
    name = _flat(clip_id)
    return [spectrogram_pair(ref, gen, sr, folder / f"{name}_spectrogram.png", onsets=(ref_onsets, gen_onsets),
                             title=clip_id, labels=("real music", "generated")),
            beat_alignment(motion, fps, peaks, {"real": ref_onsets, "generated": gen_onsets},
                           folder / f"{name}_alignment.png", title=clip_id)]


def _flat(clip_id: str) -> str:
    """A clip id (``<video>/<k>``) as one file name."""
    return clip_id.replace("/", "-")


def _log_run(logger, result: dict, out: Path) -> None:
    """Metrics, settings, tags and the report on the run ``logger`` writes to."""

    # under "evaluation.", not "evaluate."/"generate.": a run that also trained (the ablation's) holds the
    # config's own keys already, and MLflow refuses to change a logged parameter
    logger.log_hyperparams(flatten({"evaluation": {"embedding": result["embedding"], "clips": result["clips"],
                                                   "motion_threshold": result["motion_threshold"],
                                                   "sampling": result["sampling"]}}))
    logger.log_metrics({k: v for k, v in result["metrics"].items() if v is not None})
    set_tags(logger, {"stage": NAME, "model_sha256": result["model_sha256"], "embedding": result["embedding"]})
    log_artifacts(logger, [out / "metrics.json", out / "evaluation.json", out / "report.html"], NAME)
    log_artifacts(logger, [out / f for f in result["figures"]], f"{NAME}/figures")
