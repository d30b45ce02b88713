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
from pathlib import Path

import numpy as np
import torch

from vmas.config import Config
from vmas.curation.stage import StageError
from vmas.evaluation.metrics import (audio_peaks, fad, kl_divergence, mv_align, mv_align_chance, retrieval_recall,
                                     video_peaks)
from vmas.io import atomic_write_json
from vmas.run_logging import log_artifacts, set_tags

log = logging.getLogger(__name__)

NAME = "evaluate"
TOKEN_COLUMNS = ["id", "video_id", "tokens_path", "video_path", "audio_path", "error"]


def output_dir(cfg: Config) -> Path:
    return Path(cfg.paths.artifacts_dir) / NAME


def held_out_clips(cfg: Config, trained: Config) -> list[dict]:
    """Tokenized clips of the videos ``trained``'s run held out, with their source span, sorted by id."""
    from vmas.curation.runner import manifest_dir
    from vmas.data.split import split_by_video
    from vmas.manifest import Manifest

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


def clip_motion(source_path: str, start_s: float, end_s: float, flow_size: int,
                chunk: int = 64) -> tuple[np.ndarray, float]:
    """Mean Farneback flow magnitude between neighbouring frames of the source over ``[start_s, end_s]``.

    Returns ``(motion [N - 1], fps)``. Frames are decoded straight to a short side of ``flow_size``
    px and streamed ``chunk`` at a time, so a long or large video never sits in memory.
    """
    import cv2
    import decord

    from vmas.curation.beats import farneback_motion
    from vmas.media.video import open_scaled

    probe = decord.VideoReader(source_path, num_threads=1)
    fps, count = float(probe.get_avg_fps()), len(probe)
    height, width = probe[0].shape[:2]
    del probe
    first, last = int(round(start_s * fps)), min(int(round(end_s * fps)), count) - 1
    if last - first < 2:
        raise ValueError(f"{source_path}: fewer than 3 frames in {start_s:.2f}-{end_s:.2f} s")
    scale = flow_size / min(height, width)
    reader = open_scaled(source_path, max(int(round(width * scale)), 8), max(int(round(height * scale)), 8))
    motion, previous = [], []
    for begin in range(first, last + 1, chunk):
        frames = reader.get_batch(list(range(begin, min(begin + chunk, last + 1)))).asnumpy()
        gray = previous + [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
        motion.append(farneback_motion(np.stack(gray)))
        previous = gray[-1:]  # the next chunk's first flow starts from this frame
    return np.concatenate(motion), fps


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
    from vmas.codec.train_codec import select_device
    from vmas.curation.tokenize import file_sha256
    from vmas.evaluation.report import write_report
    from vmas.training.train import model_path as trained_model_path

    out = Path(out) if out is not None else output_dir(cfg)
    model_file = Path(model_path) if model_path is not None else trained_model_path(cfg)
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
    result = _generate_and_score(cfg, model_file, out, select_device(cfg.generate.device), progress)
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
    from tqdm import tqdm

    from vmas.data.tokens import load_frames
    from vmas.evaluation.embeddings import load_embedder
    from vmas.generation.package import load_model_package
    from vmas.generation.sample import SamplingSettings, generate_codes
    from vmas.media.audio import read_audio, write_wav

    package = load_model_package(model_file, device=device)
    model, codec, trained = package.model, package.codec, package.config
    clips = held_out_clips(cfg, trained)
    if len(clips) < 2:
        raise StageError(f"{NAME}: {len(clips)} held-out clip(s); FAD and retrieval need at least 2")
    embedder = load_embedder(cfg.evaluate.embedding)
    g = cfg.generate
    settings = SamplingSettings(guidance=g.guidance, temperature=g.temperature, top_k=g.top_k, top_p=g.top_p)
    generator = torch.Generator(device).manual_seed(g.seed)
    sr, thr = codec.sample_rate, cfg.evaluate.motion_threshold
    kinds = ("gen", "ref", "codec")  # generated, the real music, the real music through the codec (its ceiling)
    rows, emb, tags, video_emb, music_emb, plots = [], {k: [] for k in kinds}, {k: [] for k in kinds}, [], [], []
    events: dict[str, list] = {"gen": [], "ref": [], "video": []}  # onsets and motion peaks, for the chance level
    (out / "audio").mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=len(clips), desc=NAME, unit="clip", disable=not progress)
    for start in range(0, len(clips), g.batch_size):
        batch = clips[start : start + g.batch_size]
        frames = torch.stack([load_frames(c["video_path"], trained.video.frames, trained.video.size) for c in batch])
        codes = torch.stack([torch.from_numpy(_codes(c["tokens_path"])) for c in batch])
        frames, codes = frames.to(device), codes.to(device)
        generated = generate_codes(model, frames, codes.shape[-1], settings, generator)
        with torch.no_grad():
            audio = codec.decode(generated)[:, 0].float().cpu().numpy()  # [B, samples]
            through_codec = codec.decode(codes)[:, 0].float().cpu().numpy()  # [B, samples]: the tokens, decoded
            music, video = model.embeddings(codes, model.video_encoder(frames))
        music_emb.append(music.float().cpu().numpy())
        video_emb.append(video.float().cpu().numpy())
        for clip, gen, coded in zip(batch, audio, through_codec):
            ref = read_audio(clip["audio_path"], sample_rate=sr)[0][: len(gen)]
            ref = np.pad(ref, (0, len(gen) - len(ref)))
            wav = out / "audio" / f"{_flat(clip['id'])}.wav"
            write_wav(wav, gen / max(1.0, float(np.abs(gen).max())), sr)
            motion, fps = _held_out_motion(clip["source_path"], clip["start_s"], clip["end_s"], cfg.evaluate.flow_size)
            peaks, gen_onsets, ref_onsets = video_peaks(motion, fps, thr), audio_peaks(gen, sr), audio_peaks(ref, sr)
            for kind, times in (("gen", gen_onsets), ("ref", ref_onsets), ("video", peaks)):
                events[kind].append(times)
            codec_onsets = audio_peaks(coded, sr)
            for kind, signal in (("gen", gen), ("ref", ref), ("codec", coded)):
                emb[kind].append(embedder.embed(signal, sr))
                t = embedder.tags(signal, sr)
                if t is not None:
                    tags[kind].append(t.mean(0))
            rows.append({"id": clip["id"], "video_id": clip["video_id"], "audio": str(wav),
                         "reference_audio": clip["audio_path"], "source_path": clip["source_path"],
                         "start_s": clip["start_s"], "end_s": clip["end_s"],
                         "mv_align": mv_align(gen_onsets, peaks, fps), "mv_align_reference": mv_align(ref_onsets, peaks, fps),
                         "mv_align_codec": mv_align(codec_onsets, peaks, fps),
                         "video_peaks": len(peaks), "onsets": len(gen_onsets), "reference_onsets": len(ref_onsets),
                         "fps": fps})
            if len(plots) < 2 * cfg.evaluate.report_clips:  # two figures per clip
                plots.extend(_figures(out / "figures", clip["id"], ref, gen, sr, motion, fps, peaks, ref_onsets, gen_onsets))
            bar.update(1)
    bar.close()

    n = len(rows)
    recall = retrieval_recall(np.concatenate(video_emb), np.concatenate(music_emb), (1, 10))
    gen_emb, ref_emb = np.concatenate(emb["gen"]), np.concatenate(emb["ref"])
    fps_list, groups = [r["fps"] for r in rows], [r["video_id"] for r in rows]
    metrics = {
        "mv_align": float(np.mean([r["mv_align"] for r in rows])),
        "mv_align_reference": float(np.mean([r["mv_align_reference"] for r in rows])),
        "mv_align_chance": mv_align_chance(events["gen"], events["video"], fps_list, groups),
        "mv_align_reference_chance": mv_align_chance(events["ref"], events["video"], fps_list, groups),
        "mv_align_codec": float(np.mean([r["mv_align_codec"] for r in rows])),
        "fad": fad(gen_emb, ref_emb),
        "fad_codec": fad(np.concatenate(emb["codec"]), ref_emb),
        "kl": kl_divergence(np.stack(tags["ref"]), np.stack(tags["gen"])) if tags["gen"] else None,
        "kl_codec": kl_divergence(np.stack(tags["ref"]), np.stack(tags["codec"])) if tags["codec"] else None,
        "retrieval_r1": recall[1],
        "retrieval_r10": recall[10],
    }
    return {"stage": NAME, "model": str(model_file), "model_sha256": package.sha256, "codec": str(package.codec_path),
            "clips": n, "videos": len({r["video_id"] for r in rows}), "trained_on": package.trained_on,
            "embedding": embedder.name,
            "embedding_dim": int(gen_emb.shape[1]), "embedding_windows": [int(len(gen_emb)), int(len(ref_emb))],
            "tagger": embedder.name if tags["gen"] else None, "sampling": {**settings.__dict__, "seed": g.seed},
            "motion_threshold": thr, "chance": {"retrieval_r1": 1 / n, "retrieval_r10": min(10 / n, 1.0),
                                                "mv_align": metrics["mv_align_chance"]},
            "metrics": metrics, "per_clip": rows, "figures": [str(p.relative_to(out)) for p in plots], "device": device}


def _codes(tokens_path: str) -> np.ndarray:
    """A clip's codes ``[K, T]`` as int64 (the file is closed before returning)."""
    with np.load(tokens_path) as npz:
        return npz["codes"].astype(np.int64)


def _figures(folder: Path, clip_id: str, ref, gen, sr, motion, fps, peaks, ref_onsets, gen_onsets) -> list[Path]:
    from vmas.plots import beat_alignment, spectrogram_pair

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
    from vmas.run_logging import flatten

    # under "evaluation.", not "evaluate."/"generate.": a run that also trained (the ablation's) holds the
    # config's own keys already, and MLflow refuses to change a logged parameter
    logger.log_hyperparams(flatten({"evaluation": {"embedding": result["embedding"], "clips": result["clips"],
                                                   "motion_threshold": result["motion_threshold"],
                                                   "sampling": result["sampling"]}}))
    logger.log_metrics({k: v for k, v in result["metrics"].items() if v is not None})
    set_tags(logger, {"stage": NAME, "model_sha256": result["model_sha256"], "embedding": result["embedding"]})
    log_artifacts(logger, [out / "metrics.json", out / "evaluation.json", out / "report.html"], NAME)
    log_artifacts(logger, [out / f for f in result["figures"]], f"{NAME}/figures")


def export_clip_video(source_path: str, start_s: float, end_s: float, path: str | Path) -> Path:
    """The clip's span of its source video as a silent mp4 at the source's frame rate (for listening tests)."""
    import decord

    from vmas.media.video import write_mp4

    reader = decord.VideoReader(source_path, num_threads=1)
    fps = float(reader.get_avg_fps())
    first, last = int(round(start_s * fps)), min(int(round(end_s * fps)), len(reader))
    frames = reader.get_batch(list(range(first, last))).asnumpy()
    h, w = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2
    write_mp4(path, frames[:, :h, :w], fps)
    return Path(path)
