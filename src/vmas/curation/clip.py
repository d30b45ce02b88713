"""clip: cut each kept video into fixed-length training clips.

For clip ``k`` (``start = k * hop_seconds``, ``clip.seconds`` long) it writes:

- ``<video id>-<k>.mp4``: the *training video*, re-encoded at the profile's ``video.fps`` and
  ``video.size`` (centre square crop), no audio, so decoding it at training time is cheap;
- ``<video id>-<k>.wav``: the instrumental (from remove_vocals) for the clip, 32 kHz mono.

A video shorter than one clip gives one row with the error ``too_short``. Each clip also gets the
residual vocal energy of its window (from remove_vocals' per-second curves).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import soundfile as sf

from vmas.errors import RowError
from vmas.manifest import schema_with
from vmas.media import write_mp4, write_wav
from vmas.media.audio import residual_vocal_db
from vmas.media.video import square_crop_resize
from vmas.stage import Stage

SCHEMA = schema_with(
    pa.field("video_id", pa.string()),
    pa.field("source_path", pa.string()),
    pa.field("start_s", pa.float64()),
    pa.field("end_s", pa.float64()),
    pa.field("video_path", pa.string()),
    pa.field("audio_path", pa.string()),
    pa.field("fps", pa.float64()),
    pa.field("frames", pa.int32()),
    pa.field("size", pa.int32()),
    pa.field("residual_vocal_db", pa.float64()),
)


def clip_starts(duration_s: float, seconds: float, hop_s: float) -> list[float]:
    """Start times of the clips that fit entirely in ``duration_s``."""
    if duration_s + 1e-6 < seconds:
        return []
    count = int(np.floor((duration_s - seconds) / hop_s + 1e-6)) + 1
    return [round(k * hop_s, 6) for k in range(count)]


def clip_video(row: dict, settings: dict) -> list[dict]:
    import decord

    source = row["path"]
    reader = decord.VideoReader(source)
    native_fps = float(reader.get_avg_fps())
    duration = len(reader) / native_fps
    audio, sr = sf.read(row["instrumental_path"], dtype="float32")
    duration = min(duration, len(audio) / sr)
    seconds, hop, fps, size = settings["seconds"], settings["hop_seconds"], settings["fps"], settings["size"]
    starts = clip_starts(duration, seconds, hop)
    if not starts:
        raise RowError("too_short", f"{source}: {duration:.2f} s is shorter than one {seconds:g} s clip")
    n_frames = int(round(seconds * fps))
    mix_energy = np.asarray(row.get("mixture_energy") or [], dtype=np.float64)
    residual = np.asarray(row.get("residual_vocal_energy") or [], dtype=np.float64)
    out_dir = Path(settings["out_dir"])
    rows = []
    for k, start in enumerate(starts):
        times = start + np.arange(n_frames) / fps
        index = np.minimum(np.round(times * native_fps).astype(int), len(reader) - 1)
        frames = reader.get_batch(list(index)).asnumpy()
        name = f"{row['id']}-{k:04d}"
        write_mp4(out_dir / f"{name}.mp4", (square_crop_resize(f, size) for f in frames), fps)
        a = int(round(start * sr))
        write_wav(out_dir / f"{name}.wav", audio[a : a + int(round(seconds * sr))], sr)
        window = slice(int(np.floor(start)), int(np.ceil(start + seconds)))
        residual_db = None
        if residual.size and mix_energy.size:
            residual_db = residual_vocal_db(residual[window], mix_energy[window])
        rows.append({"id": f"{row['id']}/{k:04d}", "video_id": row["id"], "source_path": source, "start_s": start,
                     "end_s": start + seconds, "video_path": str(out_dir / f"{name}.mp4"),
                     "audio_path": str(out_dir / f"{name}.wav"), "fps": fps, "frames": n_frames, "size": size,
                     "residual_vocal_db": residual_db})
    return rows


STAGE = Stage(
    name="clip",
    title="clips",
    upstream="remove_vocals",
    schema=SCHEMA,
    process=clip_video,
    settings=lambda cfg, out_dir: {"seconds": cfg.clip.seconds, "hop_seconds": cfg.clip.hop_seconds,
                                   "fps": cfg.video.fps, "size": cfg.video.size, "out_dir": str(out_dir)},
    input_fields=("id", "path", "instrumental_path", "key"),
    description="cut fixed-length clips: a small training video and the instrumental audio for each",
)
