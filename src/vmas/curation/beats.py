"""beats: music beats, video beats, and the per-token importance weights of the beat-aligned loss.

- Music beats: onsets (librosa) of the clip's instrumental.
- Video beats: the per-frame mean optical-flow magnitude of the source video over the clip's span
  (OpenCV Farneback by default; torchvision RAFT-small from local weights), resampled to the token
  rate (``codec.frame_rate``, 50 Hz), whose local maxima within ``+-peak_window_s`` that stand out
  from the curve's typical level are the beats.
- Weights ``[T]`` (``T = clip seconds x token rate``): 1 where a music beat and a video beat fall
  within ``tolerance_s`` of each other around that timestep, ``weight_floor`` elsewhere, so steps
  without beats still train. All weights equal turns the weighted loss into the plain one.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
from scipy.signal import find_peaks

from vmas.errors import RowError, StageError
from vmas.manifest import schema_with
from vmas.media.motion import farneback_motion, raft_motion
from vmas.stage import Stage

SCHEMA = schema_with(
    pa.field("video_id", pa.string()),
    pa.field("audio_path", pa.string()),
    pa.field("video_path", pa.string()),
    pa.field("token_rate", pa.int32()),
    pa.field("music_beats", pa.list_(pa.float32())),  # seconds from the clip start
    pa.field("video_beats", pa.list_(pa.float32())),
    pa.field("aligned_beats", pa.int32()),
    pa.field("beat_weights", pa.list_(pa.float32())),  # [T]
    pa.field("flow_method", pa.string()),
)


def motion_to_token_rate(motion: np.ndarray, fps: float, seconds: float, rate: int) -> np.ndarray:
    """Resample the per-frame motion (``motion[i]`` dated at frame ``i + 1``) onto ``[seconds x rate]`` steps."""
    t_frames = (np.arange(len(motion)) + 1) / fps
    t_tokens = np.arange(int(round(seconds * rate))) / rate
    return np.interp(t_tokens, t_frames, motion, left=0.0, right=0.0) if len(motion) else np.zeros_like(t_tokens)


def video_beat_times(curve: np.ndarray, rate: int, window_s: float) -> np.ndarray:
    """Local maxima of a token-rate motion curve within ``+-window_s``, above its typical level."""
    if curve.size < 3 or not np.any(curve > 0):
        return np.zeros(0)
    level = float(np.median(curve))
    spread = float(np.median(np.abs(curve - level))) + 1e-9
    floor = level + max(3 * spread, 0.5 * level)  # well above the typical motion, noise or not
    peaks, _ = find_peaks(curve, distance=max(int(window_s * rate), 1), height=floor,
                          prominence=max(0.25 * level, 2 * spread))
    return peaks / rate


def beat_weights(music: np.ndarray, video: np.ndarray, seconds: float, rate: int, tolerance_s: float,
                 floor: float) -> tuple[np.ndarray, int]:
    """``[T]`` weights: 1 around each music beat that has a video beat within ``tolerance_s``, else ``floor``."""
    steps = int(round(seconds * rate))
    weights = np.full(steps, floor, dtype=np.float32)
    aligned = 0
    for t in music:
        if video.size and np.min(np.abs(video - t)) <= tolerance_s:
            aligned += 1
            lo, hi = int(np.floor((t - tolerance_s) * rate)), int(np.ceil((t + tolerance_s) * rate))
            weights[max(lo, 0) : min(hi + 1, steps)] = 1.0
    return weights, aligned


def beats_clip(row: dict, settings: dict) -> list[dict]:
    import decord
    import librosa
    import soundfile as sf

    seconds, rate = row["end_s"] - row["start_s"], settings["token_rate"]
    audio, sr = sf.read(row["audio_path"], dtype="float32")
    music = librosa.onset.onset_detect(y=audio, sr=sr, units="time", backtrack=False)

    reader = decord.VideoReader(row["source_path"])
    fps = float(reader.get_avg_fps())
    first = int(round(row["start_s"] * fps))
    last = min(int(round(row["end_s"] * fps)), len(reader) - 1)
    if last - first < 2:
        raise RowError("too_short", f"{row['source_path']}: fewer than 3 frames in {row['start_s']}-{row['end_s']} s")
    frames = reader.get_batch(list(range(first, last + 1))).asnumpy()
    scale = settings["flow_size"] / min(frames.shape[1:3])
    h, w = (int(round(frames.shape[1] * scale / 8)) * 8, int(round(frames.shape[2] * scale / 8)) * 8)
    small = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames])
    if settings["flow"] == "raft":
        motion = raft_motion(small, settings["raft_weights"])
    else:
        motion = farneback_motion(np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in small]))
    offset = first / fps - row["start_s"]  # the first decoded frame may sit a little off the clip start
    curve = motion_to_token_rate(motion, fps, seconds - offset, rate)
    curve = np.concatenate([np.zeros(int(round(max(offset, 0) * rate))), curve])[: int(round(seconds * rate))]
    video = video_beat_times(curve, rate, settings["peak_window_s"])
    weights, aligned = beat_weights(music, video, seconds, rate, settings["tolerance_s"], settings["weight_floor"])
    return [{"id": row["id"], "video_id": row["video_id"], "audio_path": row["audio_path"],
             "video_path": row["video_path"], "token_rate": rate, "music_beats": music.tolist(),
             "video_beats": video.tolist(), "aligned_beats": aligned, "beat_weights": weights.tolist(),
             "flow_method": settings["flow"]}]


def warm_up_onsets() -> None:
    """Compile librosa's onset picking (numba) in this process; see ``Stage.warmup``."""
    import librosa

    noise = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    librosa.onset.onset_detect(y=noise, sr=16000, units="time")


def _settings(cfg, out_dir: Path) -> dict:
    b = cfg.beats
    if b.flow == "raft" and (b.raft_weights is None or not Path(b.raft_weights).is_file()):
        raise StageError(f"beats.flow is raft but beats.raft_weights ({b.raft_weights}) is not a file: give a "
                         "local torchvision raft_small state dict, or set beats.flow to farneback")
    return {"flow": b.flow, "raft_weights": str(b.raft_weights) if b.raft_weights else None,
            "flow_size": b.flow_size, "peak_window_s": b.peak_window_s, "tolerance_s": b.tolerance_s,
            "weight_floor": b.weight_floor, "token_rate": cfg.codec.frame_rate}


STAGE = Stage(
    name="beats",
    title="beat weights",
    upstream="clip",
    schema=SCHEMA,
    process=beats_clip,
    settings=_settings,
    input_fields=("id", "source_path", "audio_path", "start_s", "end_s", "key"),
    description="music onsets, optical-flow video beats, and per-token beat weights",
    warmup=warm_up_onsets,
)
