"""Ingest batches: new files in the data folder arrive as a named batch, and each batch's videos can be read back.

A Dagster partition is one batch: the ``new_videos`` sensor lists files ingest has not registered
(:func:`unregistered_files`) and names them (:func:`batch_name`); every manifest keeps a batch's
rows in the batch's own folder (:meth:`vmas.manifest.Manifest.group`). Shared by ingest, the
sensor and the orchestration's metadata.

Local files are recorded relative to ``paths.data_dir`` (:func:`stored_path`) and read back through
:func:`resolve_path`, so a project folder copied or moved elsewhere keeps finding its videos and
sees none of them as new.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

import av
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vmas.io import atomic_path, file_sha256
from vmas.manifest import ID, ROOT_GROUP, Manifest, content_key

if TYPE_CHECKING:
    from vmas.config import Config

log = logging.getLogger(__name__)

REHASHED_SUFFIX = ".rehashed.parquet"
# files registered under another modification time, confirmed by their hash (see RegisteredFiles)
REHASHED_SCHEMA = pa.schema([pa.field("path", pa.string()), pa.field("size_bytes", pa.int64()),
                             pa.field("mtime_ns", pa.int64()), pa.field(ID, pa.string())])


# --------------------------------------------------------------------------- finding the videos in a folder

# Containers people put videos in: taken by their extension alone (FFmpeg reads each of them).
WELL_KNOWN_VIDEO = frozenset({
    "mp4", "m4v", "mkv", "mk3d", "webm", "mov", "qt", "avi", "divx", "mpg", "mpeg", "mpe", "m1v", "m2v", "vob",
    "ogv", "ogm", "ts", "mts", "m2ts", "m2t", "flv", "f4v", "wmv", "asf", "3gp", "3g2", "mxf", "dv", "dif", "rm",
    "rmvb", "nut", "y4m", "ivf", "mj2", "wtv", "gxf", "amv", "h264", "264", "h265", "265", "hevc"})
# Sound without pictures: skipped by extension, named as such in the summary.
AUDIO_ONLY = frozenset({
    "wav", "wave", "mp3", "flac", "aac", "adts", "m4a", "m4b", "oga", "opus", "wma", "aif", "aiff", "aifc", "ac3",
    "eac3", "ec3", "dts", "dtshd", "mka", "amr", "ape", "wv", "caf", "au", "snd", "mp2", "mpa", "m2a", "tta", "ra",
    "w64", "spx", "mid", "midi", "thd", "mlp", "gsm", "voc", "mpc", "tak", "shn", "dsf", "dff", "weba"})
_IMAGES = frozenset({"gif", "webp", "apng", "ico", "heic", "heif", "avif", "jxl", "svg", "psd"})
# FFmpeg demuxers for text, not media: subtitles, captions, lyrics, playlists, manifests
_TEXT_FORMATS = re.compile(r"subtit|caption|lyric|tele-typewriter|metadata in text|manifest|live streaming|"
                           r"draw file|script", re.IGNORECASE)

# why a file under a scanned folder is not taken as a video (the keys of ``skipped``)
AUDIO, IMAGE, NOT_MEDIA, NO_VIDEO, HIDDEN, NOT_LISTED, STEM = (
    "audio only", "image", "not a media file", "no video stream", "hidden", "not in ingest.extensions",
    "reference stem")
_REASON_ORDER = (AUDIO, NOT_LISTED, NO_VIDEO, IMAGE, NOT_MEDIA, HIDDEN, STEM)


@functools.cache
def _ffmpeg_extensions() -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """``(media, text, images)``: the extensions of this FFmpeg's demuxers, split into those of media
    containers, of text formats (subtitles, playlists) and of still images (``image2``)."""
    media, text, images = set(), set(), set(_IMAGES)
    for name in av.formats_available:
        try:
            fmt = av.format.ContainerFormat(name)
        except (ValueError, av.error.FFmpegError):
            continue
        if not fmt.is_input or not fmt.extensions:
            continue
        extensions = {e.strip().lower() for e in fmt.extensions if e.strip()}
        if name == "image2":
            images |= extensions
        elif _TEXT_FORMATS.search(fmt.long_name or ""):
            text |= extensions
        else:
            media |= extensions
    return frozenset(media - text - images), frozenset(text), frozenset(images)


def video_extensions(override: Iterable[str] | None = None) -> frozenset[str]:
    """The extensions (lower case, no dot) taken as video: ``override`` when given (``ingest.extensions``),
    else every one FFmpeg knows a media container by, less those of sound-only formats and images.
    Files with an extension FFmpeg knows but not among :data:`WELL_KNOWN_VIDEO` (a game's or a camera's
    own format) are opened once to see whether they hold a video stream (:func:`scan_media`)."""
    if override is not None:
        return frozenset(e.lower().lstrip(".") for e in override)
    media, _, _ = _ffmpeg_extensions()
    return frozenset((media | WELL_KNOWN_VIDEO) - AUDIO_ONLY)


@dataclass
class Scan:
    """What :func:`scan_media` found under a folder: the ``videos`` (sorted) and, by reason, the
    files it ``skipped`` (see the reason constants: audio only, image, not a media file, ...)."""

    root: Path
    videos: list[Path] = field(default_factory=list)
    skipped: dict[str, list[Path]] = field(default_factory=dict)

    def summary(self) -> str | None:
        """``"7 files skipped: 4 audio only (.mp3, .wav), 2 not a media file (.txt), 1 hidden"``; None
        when nothing worth saying was skipped (reference stems beside their videos are expected)."""
        parts, total = [], 0
        for reason in sorted(self.skipped, key=lambda r: _REASON_ORDER.index(r) if r in _REASON_ORDER else 99):
            paths = self.skipped[reason]
            if reason == STEM or not paths:
                continue
            total += len(paths)
            suffixes = sorted({p.suffix.lower() for p in paths if p.suffix})
            shown = ", ".join(suffixes[:8]) + (", ..." if len(suffixes) > 8 else "")
            parts.append(f"{len(paths)} {reason}" + (f" ({shown})" if shown and reason != HIDDEN else ""))
        if not parts:
            return None
        return f"{total} file{'s' if total != 1 else ''} skipped: " + ", ".join(parts)


def scan_media(root: Path, extensions: Iterable[str] | None = None, probe: bool = True) -> Scan:
    """The video files under ``root``, recursively, in a stable order, and what was skipped and why.

    ``extensions`` None (``ingest.extensions: null``): a file is a video when its extension is one of
    :data:`WELL_KNOWN_VIDEO`, or, when ``probe``, when it is another extension FFmpeg reads and
    opening it finds a video stream (nothing is decoded; an FFmpeg probe reads the file's first
    megabytes). Sound-only files (:data:`AUDIO_ONLY`), images, text and files FFmpeg knows no
    extension of are never opened. With ``extensions`` given, exactly those are taken, unopened.
    Hidden files and anything in a hidden folder are skipped; so are reference stems
    (``name.vocals.wav`` beside ``name.mp4``), which ingest reads with their video.
    """
    from vmas.media.stems import INSTRUMENTAL_SUFFIX, VOCALS_SUFFIX

    root = Path(root)
    listed = None if extensions is None else video_extensions(extensions)
    media, text, images = _ffmpeg_extensions()
    scan = Scan(root)
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        ext = path.suffix.lower().lstrip(".")
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            reason = HIDDEN
        elif path.name.lower().endswith((INSTRUMENTAL_SUFFIX, VOCALS_SUFFIX)):
            reason = STEM
        elif listed is not None:
            reason = None if ext in listed else _kind(ext, media, text, images) or NOT_LISTED
        elif ext in WELL_KNOWN_VIDEO:
            reason = None
        else:
            reason = _kind(ext, media, text, images)
            if reason is None:  # a container FFmpeg knows, not a common one: look inside
                reason = _probe(path) if probe else None
        if reason is None:
            scan.videos.append(path)
        else:
            scan.skipped.setdefault(reason, []).append(path)
    return scan


def _kind(ext: str, media: frozenset[str], text: frozenset[str], images: frozenset[str]) -> str | None:
    """Why a file with extension ``ext`` is no video, judged by the extension alone; None when only
    opening it can tell (a media container FFmpeg knows)."""
    if ext in AUDIO_ONLY:
        return AUDIO
    if ext in images:
        return IMAGE
    if ext in text or (ext not in media and ext not in WELL_KNOWN_VIDEO):
        return NOT_MEDIA
    return None


def _probe(path: Path) -> str | None:
    """Open ``path`` with FFmpeg (its header and first packets only): None when it has a video stream,
    else why it is skipped."""
    try:
        with av.open(str(path)) as container:
            if container.streams.video:
                return None
            return AUDIO if container.streams.audio else NO_VIDEO
    except (av.error.FFmpegError, UnicodeDecodeError, OSError):
        return NOT_MEDIA


def scan_folder(root: Path, extensions: Iterable[str] | None = None, skipped: dict[str, list[Path]] | None = None,
                quiet: bool = False) -> Iterator[Path]:
    """Video files under ``root``, recursively, in a stable order (:func:`scan_media`; ``extensions``
    None: every video extension FFmpeg knows). What was skipped is logged as one warning that names
    ``root`` and counts the files by reason and extension (at debug level when ``quiet``: a sensor
    polls), and added to ``skipped`` (``{reason: [paths]}``) when given."""
    scan = scan_media(Path(root), extensions)
    if skipped is not None:
        for reason, paths in scan.skipped.items():
            skipped.setdefault(reason, []).extend(paths)
    summary = scan.summary()
    if summary is not None:
        log.log(logging.DEBUG if quiet else logging.WARNING, "%s: %s", root, summary,
                extra={"fields": {"skipped": {r: len(p) for r, p in scan.skipped.items()}}})
    return iter(scan.videos)


def video_id(row: dict) -> str:
    """The ingested video a row comes from (clip-level rows carry it; video-level rows are it)."""
    return row.get("video_id") or row[ID]


def stored_path(path: str | Path, data_dir: str | Path) -> str:
    """How a manifest records a local file: relative to ``data_dir`` (POSIX) when the file is under it, so
    that a copied or moved project, or another machine's checkout, finds it under its own data folder;
    otherwise its absolute, resolved path. A link in the data folder (DVC's ``symlink`` cache) counts as
    under it: its own place is recorded, not its target's."""
    absolute = Path(os.path.abspath(path))
    for root in (Path(os.path.abspath(data_dir)), Path(data_dir).resolve()):
        if absolute.is_relative_to(root):
            return absolute.relative_to(root).as_posix()
    resolved, root = absolute.resolve(), Path(data_dir).resolve()
    return resolved.relative_to(root).as_posix() if resolved.is_relative_to(root) else str(resolved)


def resolve_path(stored: str | Path, data_dir: str | Path | None) -> Path:
    """The file a manifest's ``path`` names now (every reader of ingest's and download's ``path`` asks here).

    A relative path is under the current ``data_dir`` (:func:`stored_path`); an absolute one (a file
    outside the data folder, or a manifest written before paths were relative) is taken as it is. A
    relative path that is not under ``data_dir`` but is from the working directory (download rows written
    before, with a relative ``artifacts_dir``) is taken from there. ``data_dir`` None: as given.
    """
    path = Path(stored)
    if path.is_absolute() or data_dir is None:
        return path
    under = Path(data_dir).resolve() / path
    return under if under.exists() or not path.exists() else path.resolve()


def registered_files(manifest: Manifest) -> dict[tuple[str, int, int], str]:
    """``(path, size, mtime) -> id`` of every file row of an ingest manifest (or one batch's group), paths as
    stored (:func:`stored_path`). URL rows (most, at DISCO scale) have no path and are left out, column-wise,
    before any row becomes a Python object."""
    files = {}
    for rows in manifest.iter_batches([ID, "path", "size_bytes", "mtime_ns"], batch_size=65536):
        rows = rows.filter(pc.is_valid(rows.column(1)))
        files.update({(p, size, mtime): vid for vid, p, size, mtime in zip(*(c.to_pylist() for c in rows.columns))})
    return files


def rehashed_path(manifest_root: Path) -> Path:
    """``<manifests>/ingest.rehashed.parquet`` beside the ingest manifest: see :class:`RegisteredFiles`."""
    return Path(manifest_root).parent / f"{Path(manifest_root).name}{REHASHED_SUFFIX}"


class RegisteredFiles:
    """The local files an ingest manifest (or one batch's group) registered: tells a known file from a new
    one by its path, size and modification time, without reading it (what ingest need not hash again, and
    what the sensor need not call new).

    Paths are matched in the form ingest stores (relative to ``data_dir``), and, for rows written before
    that, as absolute paths. A file whose time changed since (a copy that did not keep times, such as
    ``cp -r`` or a ``dvc checkout``), or an old row's file in a moved project, is read once when a row
    has the same size and the same place (the same relative path, or an old absolute path ending in it):
    if its hash is that row's id, it is the registered file, and its new time is remembered in
    :func:`rehashed_path` (written by :meth:`save`), so no later look reads it again.
    """

    def __init__(self, manifest: Manifest, data_dir: str | Path, rehashed: Path | None = None):
        self.data_dir = Path(os.path.abspath(data_dir))  # not resolved: see stored_path
        self._exact = registered_files(manifest)
        self._rehashed_file = rehashed
        self._new: list[dict] = []  # confirmed since loading, not yet saved
        if rehashed is not None and rehashed.is_file():
            ids = set(self._exact.values())  # only this manifest's (or group's) files
            try:
                for row in pq.read_table(rehashed, schema=REHASHED_SCHEMA).to_pylist():
                    if row[ID] in ids:
                        self._exact[(row["path"], row["size_bytes"], row["mtime_ns"])] = row[ID]
            except (OSError, pa.ArrowException) as exc:
                log.warning("%s: unreadable, ignored (files whose time changed are hashed again): %s", rehashed, exc)
        self._by_name: dict[tuple[str, int], list[tuple[str, str]]] = {}
        for (path, size, _), vid in self._exact.items():
            self._by_name.setdefault((path.rsplit("/", 1)[-1], size), []).append((path, vid))

    def stored(self, path: Path) -> str:
        """``path`` as the manifest records it (:func:`stored_path`)."""
        return stored_path(path, self.data_dir)

    def lookup(self, path: Path, stat: os.stat_result) -> str | None:
        """The id of the file at ``path`` when it is registered with this size and time (reads nothing)."""
        for form in (self.stored(path), str(path.resolve())):  # as stored now, as stored before
            vid = self._exact.get((form, stat.st_size, stat.st_mtime_ns))
            if vid is not None:
                return vid
        return None

    def confirm(self, path: Path, stat: os.stat_result, vid: str) -> bool:
        """Whether the file at ``path``, whose content id is ``vid``, is a registered row's file though its
        time changed (the same size and place, see the class); remembered if so."""
        if vid not in self._candidates(path, stat):
            return False
        self._remember(path, stat, vid)
        return True

    def identify(self, path: Path) -> str | None:
        """The id of the registered file at ``path``, or None when it is not one: :meth:`lookup`, then a read
        when a row could be its file with another time (:meth:`confirm`)."""
        stat = path.stat()
        vid = self.lookup(path, stat)
        if vid is None and self._candidates(path, stat):
            vid = file_sha256(path)[:32]
            if not self.confirm(path, stat, vid):
                return None
        return vid

    def _candidates(self, path: Path, stat: os.stat_result) -> set[str]:
        """Ids of rows that could be the file at ``path`` with another time."""
        form, legacy = self.stored(path), str(path.resolve())
        relative = not Path(form).is_absolute()
        found = set()
        for stored, vid in self._by_name.get((path.name, stat.st_size), ()):
            moved = relative and Path(stored).is_absolute() and stored.endswith("/" + form)  # an old row's file
            if stored in (form, legacy) or moved:
                found.add(vid)
        return found

    def _remember(self, path: Path, stat: os.stat_result, vid: str) -> None:
        key = (self.stored(path), stat.st_size, stat.st_mtime_ns)
        if key not in self._exact:
            self._exact[key] = vid
            self._new.append({"path": key[0], "size_bytes": key[1], "mtime_ns": key[2], ID: vid})

    def save(self) -> None:
        """Add the files confirmed since loading to :func:`rehashed_path` (atomically; a write that fails, a
        read-only copy of the project, only costs hashing them again next time)."""
        if not self._new or self._rehashed_file is None:
            return
        rows = self._new
        try:
            if self._rehashed_file.is_file():
                rows = pq.read_table(self._rehashed_file, schema=REHASHED_SCHEMA).to_pylist() + rows
            latest = list({row["path"]: row for row in rows}.values())  # a file's last time is all that counts
            with atomic_path(self._rehashed_file) as tmp:
                pq.write_table(pa.Table.from_pylist(latest, schema=REHASHED_SCHEMA), tmp)
        except (OSError, pa.ArrowException) as exc:
            log.warning("%s: could not record %d files whose time changed: %s", self._rehashed_file, len(self._new),
                        exc)
            return
        self._new = []


def unregistered_files(cfg: Config, manifest_root: Path) -> list[Path]:
    """Video files under ``paths.data_dir`` that ingest has not registered (what a sensor polls).

    A file is known by its path relative to the data folder, size and time, so a copied or moved
    project lists nothing; files are only listed, except that a file whose time changed is read once
    (:class:`RegisteredFiles`). Files with the same bytes as a known video under another name stay
    listed: ingest counts them as duplicates."""
    data_dir = Path(cfg.paths.data_dir)
    files = RegisteredFiles(Manifest(manifest_root), data_dir, rehashed_path(manifest_root))
    found = []
    for path in scan_folder(data_dir, cfg.ingest.extensions, quiet=True):
        try:
            if files.identify(path) is None:
                found.append(path.resolve())
        except FileNotFoundError:  # gone since it was listed
            continue
    files.save()
    return found


def batch_name(files: Iterable[Path]) -> str:
    """A batch named after the files it starts with, so that polling the same new files twice names
    the same batch (and registers nothing twice)."""
    return f"batch-{content_key(sorted(str(f) for f in files))[:12]}"


def batch_video_ids(manifest_root: Path, batch: str) -> set[str]:
    """Ids of the videos ingest registered in ``batch`` (a Dagster partition is one batch)."""
    ingest = Manifest(manifest_root)
    if ingest.group(batch).exists():
        return {row[ID] for row in ingest.group(batch).iter_rows([ID])}
    # a batch ingested before batches had folders
    return {row[ID] for row in ingest.group(ROOT_GROUP).iter_rows([ID, "batch"]) if row["batch"] == batch}


def batches(manifest_root: Path) -> list[str]:
    """Every batch name in the ingest manifest, sorted (one folder each; older ones are named in the rows)."""
    ingest = Manifest(manifest_root)
    names = {g for g in ingest.groups() if g != ROOT_GROUP}
    names |= {row["batch"] for row in ingest.group(ROOT_GROUP).iter_rows(["batch"])}
    return sorted(names)
