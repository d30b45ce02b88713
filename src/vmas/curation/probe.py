"""probe: what each video is (duration, fps, size, rotation, codecs, audio), or why it is unusable.

Unreadable files, zero-length files, files with no video stream (audio-only), videos with no
audio and zero-duration videos get an ``error`` with a reason tag, so the summary says how many
were dropped for what.
"""

from __future__ import annotations

from pathlib import Path

import av
import pyarrow as pa

from vmas.curation.batches import resolve_path
from vmas.errors import RowError
from vmas.manifest import schema_with
from vmas.media.stems import REFERENCE_COLUMNS
from vmas.stage import Stage

SCHEMA = schema_with(
    pa.field("path", pa.string()),
    pa.field("duration_s", pa.float64()),
    pa.field("fps", pa.float64()),
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("rotation", pa.int32()),
    pa.field("video_codec", pa.string()),
    pa.field("audio_streams", pa.int32()),
    pa.field("audio_codec", pa.string()),
    pa.field("sample_rate", pa.int32()),
    *(pa.field(column, pa.string()) for column in REFERENCE_COLUMNS),  # ingest's, carried on to remove_vocals
)


def _rotation(stream: av.video.stream.VideoStream) -> int:
    """Display rotation in degrees (0, 90, 180, 270) from the stream's metadata or display matrix."""
    tag = stream.metadata.get("rotate")
    if tag is not None:
        return int(tag) % 360
    for data in getattr(stream, "side_data", {}) or {}:
        if "DISPLAYMATRIX" in str(data).upper():
            return int(round(float(getattr(stream.side_data[data], "rotation", 0)))) % 360
    return 0


def probe_video(row: dict, settings: dict) -> list[dict]:
    """One download row -> what its video is. The input ``path`` may be relative to the data folder
    (``settings["data_dir"]``, see :func:`vmas.curation.batches.resolve_path`); the output ``path`` is the
    file's absolute path, which the later stages open as it is."""
    path = resolve_path(row["path"], settings.get("data_dir"))
    if not path.is_file():
        raise RowError("missing", f"{path}: file not found")
    if path.stat().st_size == 0:
        raise RowError("empty", f"{path}: zero-length file")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise RowError("unreadable", f"{path}: not a readable media file ({exc})") from None
    with container:
        if not container.streams.video:
            raise RowError("no_video", f"{path}: no video stream (audio-only or not a video)")
        video = container.streams.video[0]
        if video.average_rate is None or float(video.average_rate) <= 0:
            raise RowError("unreadable", f"{path}: video stream has no frame rate")
        duration = _duration(container, video)
        if duration <= 0:
            raise RowError("zero_duration", f"{path}: video has zero duration")
        audio = container.streams.audio
        if not audio:
            raise RowError("no_audio", f"{path}: no audio stream")
        try:  # a stream header can look fine on a truncated file: decode the first frame to be sure
            next(container.decode(video))
        except (av.error.FFmpegError, StopIteration) as exc:
            raise RowError("unreadable", f"{path}: no decodable video frame ({exc})") from None
        return [{
            "path": str(path),
            "duration_s": duration,
            "fps": float(video.average_rate),
            "width": video.codec_context.width,
            "height": video.codec_context.height,
            "rotation": _rotation(video),
            "video_codec": video.codec_context.name,
            "audio_streams": len(audio),
            "audio_codec": audio[0].codec_context.name,
            "sample_rate": audio[0].codec_context.sample_rate,
            **{column: row.get(column) for column in REFERENCE_COLUMNS},
        }]


def _duration(container: av.container.InputContainer, video: av.video.stream.VideoStream) -> float:
    if video.duration is not None and video.time_base is not None:
        return float(video.duration * video.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0


STAGE = Stage(
    name="probe",
    title="probed videos",
    upstream="download",
    schema=SCHEMA,
    process=probe_video,
    # where relative input paths are: not part of a row's key (a moved project probes nothing again)
    settings=lambda cfg, out_dir: {"data_dir": str(Path(cfg.paths.data_dir).resolve())},
    unkeyed=("data_dir",),
    input_fields=("id", "path", "key"),  # ingest's key covers the reference stems it recorded
    description="read duration, fps, size, rotation and codecs; mark unusable videos",
)
