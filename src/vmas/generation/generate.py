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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from vmas.config import GenerateConfig
from vmas.generation.package import ModelPackage
from vmas.generation.sample import SamplingSettings, generate_codes
from vmas.generation.video_input import ModelFrames, VideoInfo, inspect_video
from vmas.io import atomic_write_json
from vmas.media.mux import OriginalAudio, mux_music

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
        sampling = SamplingSettings(guidance=g.guidance, temperature=g.temperature, top_k=g.top_k, top_p=g.top_p)
        return cls(**{"sampling": sampling, "seed": g.seed, "batch_size": g.batch_size, **changes})


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


def loudness_normalize(audio: np.ndarray, sample_rate: int, target_lufs: float, peak: float = 0.89) -> tuple[np.ndarray, float | None]:
    """Gain ``audio [C, n]`` to ``target_lufs`` (ITU-R BS.1770-4, torchaudio), peaks kept under ``peak``.

    Returns the audio and its measured loudness before the gain (None for silence or < 0.4 s).
    """
    import torchaudio.functional as AF

    x = torch.from_numpy(np.atleast_2d(audio).astype(np.float32))
    if x.shape[-1] < int(0.4 * sample_rate) or float(x.abs().max()) == 0:
        return np.atleast_2d(audio), None
    measured = float(AF.loudness(x, sample_rate))
    if not math.isfinite(measured):
        return np.atleast_2d(audio), None
    y = x * 10 ** ((target_lufs - measured) / 20)
    top = float(y.abs().max())
    if top > peak:  # a loud peak in quiet music: stay under it rather than clip
        y = y * (peak / top)
    return y.numpy(), measured


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
    from tqdm import tqdm

    from vmas.media.audio import write_wav

    cfg = package.config
    out_dir = Path(out_dir)
    rate, sr = cfg.codec.frame_rate, package.codec.sample_rate
    infos = []
    for path in inputs:
        try:
            infos.append(inspect_video(path))
        except Exception as exc:  # noqa: BLE001 - reported per input
            if on_error is None:
                raise
            on_error(Path(path), exc)
    duration = {i.path: settings.duration_s or i.duration_s for i in infos}
    names = output_names([i.path for i in infos])
    jobs, results = [], []
    for info in infos:
        for v in range(settings.variants):
            paths = _outputs(names[info.path], out_dir, v, settings.variants)
            done = None if force else _up_to_date(info, paths, package, settings, v)
            if done is not None:
                log.info("generate: %s is up to date (same input, model and settings); --force to redo", done["video"])
                results.append(done)
            else:
                jobs.append((info, v))
    by_length: dict[int, list] = {}
    for info, v in jobs:
        by_length.setdefault(int(math.ceil(duration[info.path] * rate)), []).append((info, v))
    total_steps = sum(steps * len(group) for steps, group in by_length.items())
    bar = tqdm(total=total_steps, desc="generate", unit="step", disable=not progress)
    for steps, group in by_length.items():
        for i in range(0, len(group), settings.batch_size):
            batch = group[i : i + settings.batch_size]
            try:
                frames = {info.path: ModelFrames(info, cfg.video.frames, cfg.video.fps, cfg.video.size)
                          for info, _ in batch}
            except Exception as exc:  # noqa: BLE001
                if on_error is None:
                    raise
                for info, _ in batch:
                    on_error(info.path, exc)
                continue
            seeds = [settings.seed + v for _, v in batch]
            codes = sample_music(package, [frames[info.path] for info, _ in batch], steps, settings, seeds,
                                 progress=lambda n, b=len(batch): bar.update(n * b))
            with torch.no_grad():
                audio = package.codec.decode(codes).float().cpu().numpy()  # [B, C, samples]
            out_dir.mkdir(parents=True, exist_ok=True)
            for (info, variant), music in zip(batch, audio):
                music = music[:, : int(round(duration[info.path] * sr))]
                measured = None
                if settings.loudness_lufs is not None:
                    music, measured = loudness_normalize(music, sr, settings.loudness_lufs)
                paths = _outputs(names[info.path], out_dir, variant, settings.variants)
                try:
                    write_wav(paths["wav"], music.T, sr)
                    paths["video"] = _mux(info.path, music, sr, paths["video"], settings)
                except Exception as exc:  # noqa: BLE001 - nothing of this output may stay behind
                    for path in paths.values():
                        path.unlink(missing_ok=True)
                    if on_error is None:
                        raise
                    on_error(info.path, exc)
                    continue
                sidecar = {"input": str(info.path), "input_stamp": _stamp(info.path), "video": str(paths["video"]),
                           "wav": str(paths["wav"]),
                           "model": model_name or str(package.path), "model_sha256": package.sha256,
                           "seed": settings.seed + variant, "variant": variant + 1, "duration_s": duration[info.path],
                           "sample_rate": sr, "settings": {**asdict(settings), "sampling": asdict(settings.sampling)},
                           "windows": len(plan_windows(steps, int(round(cfg.clip.seconds * rate)),
                                                       int(round(settings.overlap_s * rate)))),
                           "loudness_before_lufs": measured, "loudness_lufs": settings.loudness_lufs,
                           "mv_align": _mv_align(info, music.mean(0), sr),
                           "input_video": {"fps": info.fps, "width": info.width, "height": info.height,
                                           "variable_frame_rate": info.variable_frame_rate,
                                           "had_audio": info.has_audio}}
                atomic_write_json(paths["json"], sidecar)
                results.append(sidecar)
                log.info("generate: %s -> %s (MV-Align %.3f)", info.path, paths["video"], sidecar["mv_align"] or 0)
    bar.close()
    return results


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
    """Into an mp4 when the video codec fits one, else a Matroska file (which holds any codec)."""
    import av

    try:
        return mux_music(source, music, sample_rate, target, settings.original_audio, settings.duck_db)
    except (av.error.FFmpegError, ValueError) as exc:
        fallback = target.with_suffix(".mkv")
        log.warning("%s: its video stream does not fit an mp4 (%s); writing %s", source, exc, fallback.name)
        return mux_music(source, music, sample_rate, fallback, settings.original_audio, settings.duck_db)


def _mv_align(info: VideoInfo, music: np.ndarray, sample_rate: int) -> float | None:
    """MV-Align of the result: the music's onsets against the video's motion peaks (evaluate's definition)."""
    from vmas.evaluation.evaluate import clip_motion
    from vmas.evaluation.metrics import audio_peaks, mv_align, video_peaks

    try:
        motion, fps = clip_motion(str(info.path), 0.0, info.duration_s, 160)
    except ValueError:
        return None
    return mv_align(audio_peaks(music, sample_rate), video_peaks(motion, fps), fps)
