"""Known reference stems beside a video: the one place their file naming is defined.

A video ``x/name.mp4`` may have its instrumental and vocal stems beside it, as
``x/name.instrumental.wav`` and ``x/name.vocals.wav`` (the synthetic set writes exactly these).
Ingest records the paths it finds in the manifest columns named here, and later stages read them
from their input row: no stage looks for files by this naming itself.
"""

from __future__ import annotations

from pathlib import Path

INSTRUMENTAL_SUFFIX = ".instrumental.wav"
VOCALS_SUFFIX = ".vocals.wav"

# manifest columns (nullable strings) holding the reference stems of a video, and the suffix of each
REFERENCE_INSTRUMENTAL = "reference_instrumental_path"
REFERENCE_VOCALS = "reference_vocals_path"
REFERENCE_COLUMNS = (REFERENCE_INSTRUMENTAL, REFERENCE_VOCALS)
_SUFFIXES = {REFERENCE_INSTRUMENTAL: INSTRUMENTAL_SUFFIX, REFERENCE_VOCALS: VOCALS_SUFFIX}


def stem_path(video: str | Path, suffix: str) -> Path:
    """``x/name<suffix>`` for the video ``x/name.<ext>``."""
    video = Path(video)
    return video.parent / f"{video.stem}{suffix}"


def reference_stems(video: str | Path) -> dict[str, str | None]:
    """``{column: path}`` of the reference stems that exist beside ``video`` (None where absent)."""
    found = {column: stem_path(video, suffix) for column, suffix in _SUFFIXES.items()}
    return {column: str(path) if path.is_file() else None for column, path in found.items()}
