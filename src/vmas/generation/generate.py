"""generate: a video in, the same video with music out.

For each input: check it (:func:`inspect_video`), read the model's frames window by window, sample
music exactly as long as the video, decode it with the codec, bring it to ``loudness_lufs``, and
mux it into a copy of the video whose picture stream is copied untouched. Beside the video go the
WAV and a JSON sidecar (model, seed, settings, windows, loudness, the result's MV-Align).

Videos longer than the model's window (``clip.seconds`` of its training config) are generated in
overlapping windows: each window after the first is prompted with the last ``overlap_s`` of music
already made and conditioned on its own span of video, so the music continues as one piece.
Variants of one video (different seeds) are sampled together in one batch, and so are videos of
the same length; one loaded model serves every input.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from tqdm import tqdm

from vmas.config import GenerateConfig
from vmas.evaluation.metrics import audio_peaks, mv_align, video_peaks
from vmas.generation.video_input import ModelFrames, VideoInfo, inspect_video
from vmas.io import atomic_write_json
from vmas.media.audio import Mastered, decode_audio, integrated_loudness, master, read_audio, true_peak_db, write_wav
from vmas.media.motion import clip_motion
from vmas.media.mux import OriginalAudio, mux_music
from vmas.models.builders import sampling_settings
from vmas.models.package import ModelPackage
from vmas.models.sample import SamplingSettings, generate_codes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenerationSettings:
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    seed: int = 0
    variants: int = 1
    duration_s: float | None = None  # None: exactly the video's duration
    loudness_lufs: float | None = -14.0  # None: leave the level as decoded
    original_audio: OriginalAudio = "drop"
    duck_db: float = -12.0
    overlap_s: float = 2.0  # music carried into the next window of a long video
    batch_size: int = 8  # sequences sampled together (videos x variants)

    @classmethod
    def from_config(cls, g: GenerateConfig, **changes) -> "GenerationSettings":
        """The ``generate`` section's sampling settings, seed and batch size; ``changes`` set other fields."""
        return cls(**{"sampling": sampling_settings(g), "seed": g.seed, "batch_size": g.batch_size, **changes})


@dataclass(frozen=True)
class Window:
    start: int  # first code step this window covers
    end: int  # one past its last step
    prompt: int  # steps at its start that are already generated (the previous window's end)


def plan_windows(total: int, window: int, overlap: int) -> list[Window]:
    """Windows of at most ``window`` steps covering ``[0, total)``; each after the first starts
    ``overlap`` steps before the previous one ended (those steps are its prompt)."""
    if total <= 0:
        raise ValueError("nothing to generate: zero steps")
    overlap = min(max(overlap, 0), window - 1)
    windows = [Window(0, min(window, total), 0)]
    while windows[-1].end < total:
        start = windows[-1].end - overlap
        windows.append(Window(start, min(start + window, total), overlap))
    return windows


TRUE_PEAK_CEILING_DBTP = -1.0  # the most a played-back output may reach (4x oversampled, after AAC)
LOUDNESS_TOLERANCE_LU = 0.5  # how far from the target an output may end up without a warning


def loudness_normalize(audio: np.ndarray, sample_rate: int, target_lufs: float,
                       ceiling_dbtp: float = TRUE_PEAK_CEILING_DBTP) -> tuple[np.ndarray, float | None]:
    """``audio [C, n]`` at ``target_lufs`` (ITU-R BS.1770-4) with its true peak at most ``ceiling_dbtp``
    once AAC-encoded and decoded (:func:`vmas.media.audio.master`: a true-peak limiter, measured
    after the encoder). Returns the audio and its loudness before (None for silence or < 0.4 s).
    """
    mastered = master(audio, sample_rate, target_lufs, ceiling_dbtp, LOUDNESS_TOLERANCE_LU)
    return mastered.audio, mastered.before_lufs


def sample_music(package: ModelPackage, sources: list[ModelFrames], total: int, settings: GenerationSettings,
                 seeds: list[int], progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """Codes ``[B, K, total]`` for ``B = len(sources)`` sequences (a video each, repeats for variants);
    sequence ``b`` is sampled with its own generator seeded ``seeds[b]``, so it does not depend on the batch."""
    model, cfg = package.model, package.config
    device, dtype = next(model.parameters()).device, next(model.parameters()).dtype
    rate = cfg.codec.frame_rate
    window = int(round(cfg.clip.seconds * rate))
    codes = torch.zeros(len(sources), model.num_codebooks, total, dtype=torch.long, device=device)
    generators = [torch.Generator(device).manual_seed(seed) for seed in seeds]  # each sequence its own seed
    for w in plan_windows(total, window, int(round(settings.overlap_s * rate))):
        frames = torch.stack([s.window(w.start / rate) for s in sources]).to(device=device, dtype=dtype)
        prompt = codes[..., w.start : w.start + w.prompt] if w.prompt else None
        codes[..., w.start : w.end] = generate_codes(model, frames, w.end - w.start, settings.sampling, generators,
                                                     prompt=prompt, decoder="static" if device.type == "cuda" else "fast")
        if progress is not None:
            progress(w.end - w.start - w.prompt)
    return codes


def output_names(paths: list[Path]) -> dict[Path, str]:
    """A distinct output name per input: its stem, or ``<folder>_<stem>`` (then ``-2``, ...) when two
    inputs share a stem (``a/clip.mp4`` and ``b/clip.mp4`` must not overwrite each other)."""
    counts: dict[str, int] = {}
    for path in paths:
        counts[path.stem] = counts.get(path.stem, 0) + 1
    names: dict[Path, str] = {}
    for path in paths:
        name = path.stem if counts[path.stem] == 1 else f"{path.parent.name}_{path.stem}"
        base, k = name, 2
        while name in names.values():
            name, k = f"{base}-{k}", k + 1
        names[path] = name
    return names


def _outputs(name: str, out_dir: Path, variant: int, variants: int) -> dict[str, Path]:
    stem = name + (f".v{variant + 1}" if variants > 1 else "")
    return {"video": out_dir / f"{stem}.mp4", "wav": out_dir / f"{stem}.wav", "json": out_dir / f"{stem}.json"}


_OnError = Callable[[Path, Exception], None] | None


@dataclass(frozen=True)
class _Job:
    """One output to make: variant ``variant`` (0-based) of the video ``info``, ``steps`` code steps long."""

    info: VideoInfo
    variant: int
    duration_s: float  # the music's length: ``settings.duration_s`` or the video's
    steps: int  # code steps covering ``duration_s`` at the codec's frame rate
    paths: dict[str, Path]  # where its video, wav and json go (see :func:`_outputs`)


def generate(package: ModelPackage, inputs: Iterable[str | Path], out_dir: str | Path,
             settings: GenerationSettings = GenerationSettings(), model_name: str | None = None,
             progress: bool = True, on_error: Callable[[Path, Exception], None] | None = None,
             force: bool = False) -> list[dict]:
    """Music for every input video; returns one sidecar dict per output (see the module docstring).

    An output whose sidecar records the same input file (size and time), model and settings is
    kept as it is unless ``force``.

    A bad input raises :class:`VideoInputError` naming it, unless ``on_error`` is given: then it
    is reported there and the other inputs go on. Nothing is written for a failed input.
    """
    out_dir = Path(out_dir)
    infos = _inspect_inputs(inputs, on_error)
    jobs, results = _plan_jobs(package, infos, out_dir, settings, force)
    bar = tqdm(total=sum(job.steps for job in jobs), desc="generate", unit="step", disable=not progress)
    for steps, batch in _batches(jobs, settings.batch_size):
        audio = _music_for_batch(package, batch, steps, settings, bar, on_error)
        if audio is None:
            continue
        out_dir.mkdir(parents=True, exist_ok=True)
        for job, music in zip(batch, audio):
            sidecar = _finish_output(package, job, music, settings, model_name, on_error)
            if sidecar is not None:
                results.append(sidecar)
    bar.close()
    return results


def music_for_videos(package: ModelPackage, inputs: Iterable[str | Path],
                     settings: GenerationSettings = GenerationSettings(), progress: bool = False) -> list[np.ndarray]:
    """Music ``[C, samples]`` for each input video, made as :func:`generate` makes it (same checks, windows,
    seeds, batches, trim and loudness) but kept in memory: nothing is muxed or written (the MLflow model's
    ``predict`` serves it). One entry per input and variant, in input order, variants of one input together.
    A bad input raises :class:`VideoInputError` naming it."""
    rate, sr = package.config.codec.frame_rate, package.codec.sample_rate
    jobs = []
    for info in _inspect_inputs(inputs, None):
        duration = settings.duration_s or info.duration_s
        jobs += [_Job(info, v, duration, int(math.ceil(duration * rate)), {}) for v in range(settings.variants)]
    music: dict[int, np.ndarray] = {}
    bar = tqdm(total=sum(job.steps for job in jobs), desc="generate", unit="step", disable=not progress)
    for steps, batch in _batches(jobs, settings.batch_size):
        audio = _music_for_batch(package, batch, steps, settings, bar, None)
        for job, decoded in zip(batch, audio):
            music[id(job)] = _trim_and_level(decoded, job.duration_s, sr, settings)[0]
    bar.close()
    return [music[id(job)] for job in jobs]


def _trim_and_level(music: np.ndarray, duration_s: float, sample_rate: int,
                    settings: GenerationSettings) -> tuple[np.ndarray, Mastered | None]:
    """Decoded ``music [C, samples]`` cut to ``duration_s`` and brought to ``settings.loudness_lufs`` under
    the true-peak ceiling (:func:`vmas.media.audio.master`); also how (None when not levelled)."""
    music = music[:, : int(round(duration_s * sample_rate))]
    if settings.loudness_lufs is None:
        return music, None
    mastered = master(music, sample_rate, settings.loudness_lufs, TRUE_PEAK_CEILING_DBTP, LOUDNESS_TOLERANCE_LU)
    return mastered.audio, mastered


def _report(on_error: _OnError, paths: Iterable[Path], exc: Exception) -> None:
    """The one policy for a failed input, called from an ``except`` block: without ``on_error``
    re-raise ``exc``; with it, report ``exc`` once for each of ``paths`` so the caller can skip
    them and go on with the other inputs."""
    if on_error is None:
        raise exc
    for path in paths:
        on_error(path, exc)


def _inspect_inputs(inputs: Iterable[str | Path], on_error: _OnError) -> list[VideoInfo]:
    """Every input that :func:`inspect_video` accepts, in order; a bad one is reported through
    :func:`_report` (so it raises without ``on_error``) before anything is sampled or written."""
    infos = []
    for path in inputs:
        try:
            infos.append(inspect_video(path))
        except Exception as exc:  # noqa: BLE001 - reported per input
            _report(on_error, [Path(path)], exc)
    return infos


def _plan_jobs(package: ModelPackage, infos: list[VideoInfo], out_dir: Path, settings: GenerationSettings,
               force: bool) -> tuple[list[_Job], list[dict]]:
    """The outputs still to make, and the sidecars of those kept: one output per input and variant,
    named by :func:`output_names`; one already up to date (:func:`_up_to_date`) is kept unless
    ``force``, so a rerun over the same folder only samples what is new or changed."""
    rate = package.config.codec.frame_rate
    names = output_names([i.path for i in infos])
    jobs, kept = [], []
    for info in infos:
        duration = settings.duration_s or info.duration_s
        for v in range(settings.variants):
            paths = _outputs(names[info.path], out_dir, v, settings.variants)
            done = None if force else _up_to_date(info, paths, package, settings, v)
            if done is not None:
                log.info("generate: %s is up to date (same input, model and settings); --force to redo", done["video"])
                kept.append(done)
            else:
                jobs.append(_Job(info, v, duration, int(math.ceil(duration * rate)), paths))
    return jobs, kept


def _batches(jobs: list[_Job], batch_size: int) -> list[tuple[int, list[_Job]]]:
    """``(steps, batch)`` pairs: the jobs grouped by length (sequences in one batch must have the
    same number of code steps), each group cut into batches of at most ``batch_size``; groups
    in order of their first job, jobs in their planned order."""
    by_length: dict[int, list[_Job]] = {}
    for job in jobs:
        by_length.setdefault(job.steps, []).append(job)
    return [(steps, group[i : i + batch_size])
            for steps, group in by_length.items() for i in range(0, len(group), batch_size)]


def _music_for_batch(package: ModelPackage, batch: list[_Job], steps: int, settings: GenerationSettings,
                     bar: tqdm, on_error: _OnError) -> np.ndarray | None:
    """Decoded music ``audio [B, C, samples]`` for the ``B = len(batch)`` jobs, ``steps`` code steps
    each: read every video's model frames, sample codes ``[B, K, steps]`` (job ``b`` seeded
    ``settings.seed + variant``), decode them with the codec. None when the frames cannot be
    read: that failure is reported (:func:`_report`) for every job of the batch."""
    cfg = package.config
    try:
        frames = {job.info.path: ModelFrames(job.info, cfg.video.frames, cfg.video.fps, cfg.video.size)
                  for job in batch}
    except Exception as exc:  # noqa: BLE001
        _report(on_error, [job.info.path for job in batch], exc)
        return None
    seeds = [settings.seed + job.variant for job in batch]
    codes = sample_music(package, [frames[job.info.path] for job in batch], steps, settings, seeds,
                         progress=lambda n, b=len(batch): bar.update(n * b))
    with torch.no_grad():
        return package.codec.decode(codes).float().cpu().numpy()  # [B, C, samples]


def _finish_output(package: ModelPackage, job: _Job, music: np.ndarray, settings: GenerationSettings,
                   model_name: str | None, on_error: _OnError) -> dict | None:
    """Write one output from its decoded ``music [C, samples]`` and return its sidecar: trim to the
    video's length, bring to ``settings.loudness_lufs``, write the WAV, mux into the video, write
    the JSON sidecar. When writing the WAV or muxing fails, every file of this output is removed
    (nothing may stay behind for a failed input) and the failure goes to :func:`_report`: None."""
    sr = package.codec.sample_rate
    music, level = _trim_and_level(music, job.duration_s, sr, settings)
    paths = dict(job.paths)
    try:
        write_wav(paths["wav"], music.T, sr)
        track, track_level = _with_original(job.info, music, sr, settings, level)
        muxing = replace(settings, original_audio="drop")  # the original sound, if wanted, is in the track
        paths["video"] = _mux(job.info.path, track, sr, paths["video"], muxing)
        loudness = _output_loudness(job.info.path, track, sr, paths, muxing, level, track_level)
    except Exception as exc:  # noqa: BLE001 - nothing of this output may stay behind
        for path in paths.values():
            path.unlink(missing_ok=True)
        _report(on_error, [job.info.path], exc)
        return None
    sidecar = _sidecar(package, job, music, loudness, paths, settings, model_name)
    atomic_write_json(paths["json"], sidecar)
    log.info("generate: %s -> %s (MV-Align %.3f)", job.info.path, paths["video"], sidecar["mv_align"] or 0)
    return sidecar


def _with_original(info: VideoInfo, music: np.ndarray, sample_rate: int, settings: GenerationSettings,
                   level: Mastered | None) -> tuple[np.ndarray, Mastered | None]:
    """The track to mux, ``[C, samples]``, and how it was levelled: the music itself, or (``keep``,
    ``duck``) the music with the video's own sound mixed in (:func:`vmas.media.mux.mix_original`),
    that mix mastered again, so that the loudness and the true-peak ceiling hold on what is heard.
    Damaged packets of the original sound are skipped (:func:`vmas.media.audio.read_audio`)."""
    if settings.original_audio == "drop" or not info.has_audio:
        return music, level
    from vmas.media.mux import mix_original

    original = read_audio(info.path, sample_rate=sample_rate, mono=False)[0]
    mixed = mix_original(music, original, settings.original_audio, settings.duck_db)
    if settings.loudness_lufs is None:
        return mixed, level
    mastered = master(mixed, sample_rate, settings.loudness_lufs, TRUE_PEAK_CEILING_DBTP, LOUDNESS_TOLERANCE_LU)
    return mastered.audio, mastered


def _output_loudness(source: Path, track: np.ndarray, sample_rate: int, paths: dict[str, Path],
                     settings: GenerationSettings, level: Mastered | None, track_level: Mastered | None) -> dict:
    """The sidecar's loudness fields, measured on the written file's own music track (decoded: what a
    player plays). The track was mastered against the AAC encoder; a file whose container took
    another codec (Opus in WebM/Ogg) and missed the target or the ceiling is muxed once more with
    the gain corrected. A miss that remains, or a target the music could not reach, is logged and
    given as ``loudness_warning`` with the loudness and true peak reached."""
    if settings.loudness_lufs is None:
        return {"loudness_before_lufs": None}
    target, ceiling = settings.loudness_lufs, TRUE_PEAK_CEILING_DBTP
    lufs, peak = _measure(paths["video"])
    off = lufs is not None and (abs(lufs - target) > LOUDNESS_TOLERANCE_LU or peak > ceiling)
    if off and track_level is not None and track_level.warning is None:
        gain = min(target - lufs, ceiling - 0.05 - peak)
        paths["video"] = _mux(source, track * 10 ** (gain / 20), sample_rate, paths["video"], settings)
        lufs, peak = _measure(paths["video"])
    before = None if level is None or level.before_lufs is None else round(level.before_lufs, 2)
    record = {**(track_level.as_dict() if track_level else {}), "loudness_before_lufs": before,
              "loudness_reached_lufs": None if lufs is None else round(lufs, 2),
              "true_peak_dbtp": None if peak is None else round(peak, 2)}
    warning = track_level.warning if track_level else None
    if warning is None and lufs is not None and (abs(lufs - target) > LOUDNESS_TOLERANCE_LU or peak > ceiling):
        warning = (f"loudness target {target:g} LUFS not reached: the file measures {lufs:.1f} LUFS at a true "
                   f"peak of {peak:.1f} dBTP (ceiling {ceiling:g} dBTP)")
    if warning is not None:
        log.warning("generate: %s: %s", paths["video"], warning)
    return {**record, "loudness_warning": warning}


def _measure(path: Path) -> tuple[float | None, float | None]:
    """Integrated loudness (LUFS) and true peak (dBTP) of ``path``'s first audio track, decoded."""
    decoded = decode_audio(path)
    return integrated_loudness(decoded.audio, decoded.sample_rate), true_peak_db(decoded.audio)


def _sidecar(package: ModelPackage, job: _Job, music: np.ndarray, loudness: dict, paths: dict[str, Path],
             settings: GenerationSettings, model_name: str | None) -> dict:
    """The JSON record of one output (``music [C, samples]`` as written): what it was made from
    (input and its stamp, model, seed, settings) so :func:`_up_to_date` can keep it on a rerun,
    and what came out (windows, ``loudness`` as :func:`_output_loudness` measured it on the file,
    MV-Align, the input video's format)."""
    cfg, info, sr = package.config, job.info, package.codec.sample_rate
    rate = cfg.codec.frame_rate
    return {"input": str(info.path), "input_stamp": _stamp(info.path), "video": str(paths["video"]),
            "wav": str(paths["wav"]),
            "model": model_name or str(package.path), "model_sha256": package.sha256,
            "seed": settings.seed + job.variant, "variant": job.variant + 1, "duration_s": job.duration_s,
            "sample_rate": sr, "settings": {**asdict(settings), "sampling": asdict(settings.sampling)},
            "windows": len(plan_windows(job.steps, int(round(cfg.clip.seconds * rate)),
                                        int(round(settings.overlap_s * rate)))),
            "loudness_lufs": settings.loudness_lufs, **loudness,
            "mv_align": _mv_align(info, music.mean(0), sr),
            "input_video": {"fps": info.fps, "width": info.width, "height": info.height,
                            "variable_frame_rate": info.variable_frame_rate,
                            "had_audio": info.has_audio}}


def _stamp(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def _up_to_date(info: VideoInfo, paths: dict[str, Path], package: ModelPackage, settings: GenerationSettings,
                variant: int) -> dict | None:
    """The existing sidecar when its output was made from this very input, model and settings."""
    if not paths["json"].is_file():
        return None
    try:
        sidecar = json.loads(paths["json"].read_text())
    except ValueError:
        return None
    same = (sidecar.get("input_stamp") == _stamp(info.path) and sidecar.get("model_sha256") == package.sha256
            and sidecar.get("settings") == json.loads(json.dumps({**asdict(settings), "sampling": asdict(settings.sampling)}))
            and sidecar.get("variant") == variant + 1)
    return sidecar if same and Path(sidecar["video"]).is_file() and Path(sidecar["wav"]).is_file() else None


def _mux(source: Path, music: np.ndarray, sample_rate: int, target: Path, settings: GenerationSettings) -> Path:
    """Mux and return the path written: ``target`` (an mp4) when the video stream fits one, else the
    same name with the suffix of the container that took it (``.mkv``, ``.webm``, ``.ogv``,
    ``.mov``); :func:`mux_music` re-encodes the picture only when none does, and logs a warning then."""
    return mux_music(source, music, sample_rate, target, settings.original_audio, settings.duck_db).path


def _mv_align(info: VideoInfo, music: np.ndarray, sample_rate: int) -> float | None:
    """MV-Align of the result: the music's onsets against the video's motion peaks (evaluate's definition)."""

    try:
        motion, fps = clip_motion(str(info.path), 0.0, info.duration_s, 160)
    except ValueError:
        return None
    return mv_align(audio_peaks(music, sample_rate), video_peaks(motion, fps), fps)
