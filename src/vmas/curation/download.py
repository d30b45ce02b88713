"""download: fetch each ingested URL once into the artifacts, so every later stage reads a local file.

Ingest only registers videos; a DISCO-10M row is a YouTube URL. This stage gives each row a local
``path``, one of three ways (its ``status``):

- ``local``: ingest already had the file (a folder or a path list): nothing to fetch;
- ``present``: the video is already under ``ingest.media_root`` as ``<youtube id>.<ext>``;
- ``downloaded``: fetched to ``<out_dir>/<batch>/<id><suffix>`` with ``download.command`` (yt-dlp
  by default) or, when the command is ``null`` or the URL is not HTTP(S) (``s3://``, ``gs://``,
  ``file://``...), with the built-in downloader (``urllib`` for HTTP(S), ``fsspec`` for the rest).

Politely: download starts are spaced per host, at most ``per_host_per_s`` a second, across every
thread of the process (the stage runs its rows in ``workers`` threads, the waiting being on the
network). Resumably: a file appears under its final name only once complete and checked (not
empty, at most ``max_bytes``): it is written under a hidden temporary name beside it and renamed.
A final file already there is taken as done, so a run killed before its manifest part was written
fetches nothing again. yt-dlp's own ``<temporary>.part`` is kept after a transient failure, so the
next try (or run) continues it (yt-dlp's ``--continue``, on by default); it is deleted on a
permanent failure.

Failures are ``RowError``s with a reason the summary counts: ``not_found`` (HTTP 404/410, a removed,
private or unavailable video), ``too_large`` (over ``max_bytes``), ``http_error`` (any other
permanent failure: other 4xx, unsupported URL) and ``transient`` (HTTP 5xx/408/429, timeouts,
dropped or refused connections, truncated or empty bodies). Only transient failures are tried
again: ``retries`` more times within a call, after ``backoff_s * 2**k`` seconds (times a jitter in
[0.5, 1.5]), and, being the stage's ``retry_errors``, on the next run.
"""

from __future__ import annotations

import errno
import http.client
import logging
import os
import random
import re
import shlex
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

import pyarrow as pa

from vmas.config import Config
from vmas.curation.batches import resolve_path, stored_path, video_extensions
from vmas.curation.sources import youtube_id
from vmas.errors import RowError, StageError
from vmas.manifest import schema_with
from vmas.media.stems import REFERENCE_COLUMNS
from vmas.stage import Stage

log = logging.getLogger(__name__)

SCHEMA = schema_with(
    pa.field("path", pa.string()),  # the local file (null on error)
    pa.field("url", pa.string()),
    pa.field("status", pa.string()),  # "local", "present" or "downloaded"
    pa.field("bytes", pa.int64()),
    pa.field("seconds", pa.float64()),  # time spent fetching (every try and wait; 0 when nothing was fetched)
    pa.field("attempts", pa.int32()),  # tries made (0 when nothing was fetched)
    *(pa.field(column, pa.string()) for column in REFERENCE_COLUMNS),  # ingest's, carried on to remove_vocals
)

BLOCK = 1 << 16  # bytes read at a time by the built-in downloader
USER_AGENT = "vmas-download/1"
HTTP_SCHEMES = ("http", "https")
DEFAULT_SUFFIX = ".mp4"

# yt-dlp's messages (its stderr, ``ERROR: ...``) by reason, tried in this order; anything else that
# fails is ``http_error``. The texts come from yt-dlp's source: networking/exceptions.py
# ("HTTP Error 404: Not Found", IncompleteRead's "N bytes read, M more expected"),
# downloader/http.py ("Did not get any data blocks", ContentTooShortError's "Downloaded N bytes,
# expected M bytes", "File is larger than max-filesize"), extractor/youtube/_video.py (the
# playability reasons: "Video unavailable", "Private video", "This video has been removed ...",
# "This content isn't available, try again later", "Sign in to confirm you're not a bot") and the
# requests/urllib3 transport errors ("Read timed out.", "Connection refused", "Connection reset").
YT_DLP_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("too_large", re.compile(r"larger than max-filesize", re.I)),
    ("not_found", re.compile(
        r"HTTP Error (404|410)\b|Video unavailable|Private video|This video is private|"
        r"(video|it) (has been|was) removed|removed by the (uploader|user)|account .{0,40}(terminated|closed)|"
        r"This video is not available|video is no longer available|video does not exist|"
        r"not available (from|in) your (location|country)|geo.?restrict", re.I)),
    ("transient", re.compile(
        r"HTTP Error (5\d\d|408|429)\b|Too Many Requests|timed? ?out|timeout|"
        r"Connection (reset|refused|aborted)|Remote ?end closed|RemoteDisconnected|Broken pipe|"
        r"IncompleteRead|bytes read, \d+ more expected|Downloaded \d+ bytes, expected \d+ bytes|Content-Length|"
        r"Did not get any data blocks|Temporary failure in name resolution|Network is unreachable|"
        r"UNEXPECTED_EOF|EOF occurred|try again later|rate.?limit|confirm you.?re not a bot", re.I)),
)


class HostRateLimiter:
    """At most ``per_s`` starts a second per URL host, spaced evenly, shared by the threads of a process.

    :meth:`wait` books the host's next free slot under a lock and sleeps, outside it, until then:
    ``n`` starts for one host take at least ``(n - 1) / per_s`` seconds, whatever the threads.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next: dict[str, float] = {}  # host -> time.monotonic() of its next free slot

    def wait(self, url: str, per_s: float) -> float:
        """Block until ``url``'s host may start another download; return that start's monotonic time."""
        host = url_host(url)
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next.get(host, now))
            self._next[host] = slot + 1.0 / per_s
            if len(self._next) > 10_000:  # forget hosts whose slot has passed
                self._next = {h: t for h, t in self._next.items() if t > now}
        if slot > now:
            time.sleep(slot - now)
        return slot


LIMITER = HostRateLimiter()


def url_host(url: str) -> str:
    """The host a URL's downloads are rate-limited by (an s3/gs bucket counts as a host)."""
    parsed = urlparse(url)
    return (parsed.hostname or parsed.netloc or parsed.scheme or "local").lower()


def settings(cfg: Config, out_dir: Path) -> dict:
    """The stage's parameters: ``cfg.download``, where fetched media may already be, and where to write.

    The output folder is made here, once per run, even when every video is local and nothing is
    fetched: it is the stage's declared output (``dvc.yaml``), which must exist after a run."""
    out_dir.mkdir(parents=True, exist_ok=True)
    d = cfg.download
    return {
        "command": d.command,
        "workers": d.workers,
        "per_host_per_s": d.per_host_per_s,
        "retries": d.retries,
        "backoff_s": d.backoff_s,
        "timeout_s": d.timeout_s,
        "max_bytes": d.max_bytes,
        "media_root": None if cfg.ingest.media_root is None else str(cfg.ingest.media_root),
        "extensions": sorted(video_extensions(cfg.ingest.extensions)),
        "out_dir": str(out_dir),
        "data_dir": str(Path(cfg.paths.data_dir).resolve()),  # where ingest's relative paths are (unkeyed)
    }


def download_video(row: dict, settings: dict) -> list[dict]:
    """One ingest row -> its local file: the one ingest had, one under ``media_root``, or a download.

    Returns one row (``path``, ``url``, ``status``, ``bytes``, ``seconds``, ``attempts`` and the
    reference stems); raises :class:`RowError` (``missing``, ``not_found``, ``too_large``,
    ``http_error``, ``transient``) when there is no file to be had. ``path`` follows ingest's form
    (relative to ``settings["data_dir"]`` when under it, else absolute; see
    :func:`vmas.curation.batches.stored_path`), and is read the same way.
    """
    url = row.get("url") or None
    stems = {column: row.get(column) for column in REFERENCE_COLUMNS}
    data_dir = settings.get("data_dir")
    if row.get("path"):
        path = resolve_path(row["path"], data_dir)
        if path.is_file():
            return [_result(path, url, "local", 0.0, 0, stems, data_dir)]
        if url is None:
            raise RowError("missing", f"{path}: file not found and no URL to fetch it from")
    if url is None:
        raise RowError("missing", "neither a path nor a URL")
    present = _in_media_root(url, settings)
    if present is not None:
        return [_result(present, url, "present", 0.0, 0, stems, data_dir)]
    target = target_path(row, settings)
    if target.is_file() and target.stat().st_size > 0:  # fetched by a run killed before it wrote its manifest
        return [_result(target, url, "downloaded", 0.0, 0, stems, data_dir)]
    start = time.monotonic()
    attempts = fetch(url, target, settings)
    return [_result(target, url, "downloaded", time.monotonic() - start, attempts, stems, data_dir)]


def target_path(row: dict, settings: dict) -> Path:
    """``<out_dir>/<batch>/<id><suffix>``: the suffix is the URL's when it is a known extension, else .mp4."""
    suffix = Path(urlparse(row["url"]).path).suffix.lower()
    extensions = {f".{e.lower().lstrip('.')}" for e in settings.get("extensions") or ()}
    if suffix not in extensions:
        suffix = DEFAULT_SUFFIX
    name = re.sub(r"[^A-Za-z0-9._-]", "_", str(row["id"])).lstrip(".") or "video"
    return Path(settings["out_dir"]) / str(row.get("batch") or "unbatched") / f"{name}{suffix}"


def fetch(url: str, target: Path, settings: dict) -> int:
    """Download ``url`` to ``target`` (atomically), trying transient failures again; return the tries made.

    Every try waits for its host's slot (:data:`LIMITER`); the last transient failure is raised.
    """
    retries = int(settings.get("retries") or 0)
    backoff_s = float(settings.get("backoff_s") or 0.0)
    tries = 0
    while True:
        LIMITER.wait(url, float(settings["per_host_per_s"]))
        tries += 1
        try:
            _fetch_once(url, target, settings)
            return tries
        except RowError as exc:
            log.debug("download failed (try %d): %s: %s", tries, exc.reason, exc)
            if exc.reason != "transient" or tries > retries:
                if tries > 1:
                    raise RowError(exc.reason, f"{exc} (after {tries} tries)") from None
                raise
            delay = backoff_s * 2 ** (tries - 1) * random.uniform(0.5, 1.5)
            log.info("retrying %s in %.2f s (try %d of %d): %s", url, delay, tries + 1, retries + 1, exc)
            time.sleep(delay)


def classify_message(text: str) -> str:
    """The failure reason a downloader's error text stands for (see :data:`YT_DLP_PATTERNS`)."""
    for reason, pattern in YT_DLP_PATTERNS:
        if pattern.search(text):
            return reason
    return "http_error"


def _result(path: Path, url: str | None, status: str, seconds: float, attempts: int, stems: dict,
            data_dir: str | None) -> dict:
    """The output row; ``path`` as ingest stores one (:func:`~vmas.curation.batches.stored_path`), or as
    given when the settings name no data folder."""
    return {"path": str(path) if data_dir is None else stored_path(path, data_dir), "url": url, "status": status,
            "bytes": path.stat().st_size,
            "seconds": float(seconds), "attempts": attempts, **stems}


def _in_media_root(url: str, settings: dict) -> Path | None:
    root = settings.get("media_root")
    vid = youtube_id(url) if root else None
    if vid is None:
        return None
    for ext in settings.get("extensions") or ():
        candidate = Path(root) / f"{vid}.{ext.lstrip('.')}"
        if candidate.is_file():
            return candidate
    return None


def _fetch_once(url: str, target: Path, settings: dict) -> None:
    """One try: fetch to a temporary name beside ``target``, check it, rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}.tmp{target.suffix}")  # keeps the suffix (yt-dlp, ffmpeg go by it)
    part = tmp.with_name(tmp.name + ".part")  # yt-dlp's, while it downloads
    max_bytes, timeout_s = int(settings["max_bytes"]), float(settings["timeout_s"])
    command = settings.get("command")
    scheme = urlparse(url).scheme.lower()
    try:
        if scheme in HTTP_SCHEMES and command:
            _run_command(command, url, tmp, max_bytes, timeout_s)
        elif scheme in HTTP_SCHEMES:
            _http_get(url, tmp, max_bytes, timeout_s)
        else:
            _fsspec_get(url, tmp, max_bytes, timeout_s)
        if not tmp.is_file():
            raise RowError("http_error", f"{url}: the downloader wrote no file")
        size = tmp.stat().st_size
        if size == 0:
            raise RowError("transient", f"{url}: empty file (0 bytes)")
        if size > max_bytes:
            raise RowError("too_large", f"{url}: {size} bytes, over max_bytes {max_bytes}")
        os.replace(tmp, target)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, RowError) and exc.reason != "transient":
            part.unlink(missing_ok=True)  # kept after a transient failure: yt-dlp continues it next time
        raise


def _run_command(command: str, url: str, out: Path, max_bytes: int, timeout_s: float) -> None:
    """Run the ``download.command`` template for one URL, writing ``out``; a failure is a RowError."""
    args = [arg.format(url=url, out=str(out), max_bytes=max_bytes, timeout_s=timeout_s) for arg in shlex.split(command)]
    if not args:
        raise StageError("download.command is empty")
    name = Path(args[0]).name
    if args[0] == "yt-dlp" and shutil.which("yt-dlp") is None:
        args = [sys.executable, "-m", "yt_dlp", *args[1:]]  # installed as a module, not on PATH
    try:
        result = subprocess.run(args, capture_output=True, text=True, errors="replace", timeout=timeout_s)
    except subprocess.TimeoutExpired:  # run() has killed it
        raise RowError("transient", f"{url}: timed out after {timeout_s:g} s ({name} killed)") from None
    except FileNotFoundError as exc:
        raise StageError(f"download.command: {args[0]!r} not found ({exc})") from None
    output = f"{result.stderr or ''}\n{result.stdout or ''}"
    message = _error_text(output)
    if result.returncode != 0:
        reason = classify_message(message or output)
        raise RowError(reason, f"{url}: {message or f'{name} exited with status {result.returncode}'}")
    if not out.is_file():
        # yt-dlp skips a file whose Content-Length is over --max-filesize, exiting 0 (silently when --quiet)
        if re.search(r"max-filesize", output, re.I) or "{max_bytes}" in command:
            raise RowError("too_large", f"{url}: no file written (over max_bytes {max_bytes}?)"
                                        f"{f': {message}' if message else ''}")
        raise RowError("http_error", f"{url}: {name} exited 0 but wrote no file"
                                     f"{f': {message}' if message else ''}")


def _error_text(output: str) -> str:
    """The gist of a downloader's output: from its first ``ERROR:`` on (else its last line), on one line."""
    text = " ".join(output.split())
    if "ERROR:" in text:
        text = " ".join(text[text.index("ERROR:"):].replace("ERROR:", " ").split())
    elif text:
        text = [line.strip() for line in output.splitlines() if line.strip()][-1]
    return text if len(text) <= 500 else "..." + text[-500:]


def _http_get(url: str, out: Path, max_bytes: int, timeout_s: float) -> None:
    """The built-in HTTP(S) downloader: streamed, the whole file within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise _status_error(url, exc.code, exc.reason) from None
    except Exception as exc:  # noqa: BLE001 - classified, never lost
        raise _network_error(url, exc, timeout_s) from None
    with response:
        length = response.headers.get("Content-Length")
        expected = int(length) if length and length.strip().isdigit() else None
        if expected is not None and expected > max_bytes:
            raise RowError("too_large", f"{url}: {expected} bytes (Content-Length), over max_bytes {max_bytes}")

        def read(remaining: float) -> bytes:
            sock = getattr(getattr(response.fp, "raw", None), "_sock", None)
            if sock is not None:  # no single read may outlast the whole-file deadline
                sock.settimeout(max(remaining, 0.001))
            return response.read1(BLOCK)  # what has arrived (read() would wait for a whole block)

        received = _copy(url, read, out, max_bytes, deadline, timeout_s,
                         lambda exc: _network_error(url, exc, timeout_s))
    if expected is not None and received < expected:
        raise RowError("transient", f"{url}: truncated body: {received} of {expected} bytes (Content-Length)")


def _fsspec_get(url: str, out: Path, max_bytes: int, timeout_s: float) -> None:
    """The built-in downloader for other schemes (s3://, gs://, file://, memory://, a plain path)."""
    import fsspec

    deadline = time.monotonic() + timeout_s
    try:
        source = fsspec.open(url, "rb").open()
    except Exception as exc:  # noqa: BLE001 - classified, never lost
        raise _storage_error(url, exc) from None
    with source:
        size = getattr(source, "size", None)
        if isinstance(size, int) and size > max_bytes:
            raise RowError("too_large", f"{url}: {size} bytes, over max_bytes {max_bytes}")
        _copy(url, lambda remaining: source.read(BLOCK), out, max_bytes, deadline, timeout_s,
              lambda exc: _storage_error(url, exc))


def _copy(url: str, read: Callable[[float], bytes], out: Path, max_bytes: int, deadline: float, timeout_s: float,
          error: Callable[[BaseException], RowError]) -> int:
    """Blocks from ``read`` into ``out`` until the end; stops past ``max_bytes`` or the deadline. Returns the bytes."""
    received = 0
    with open(out, "wb") as sink:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RowError("transient", f"{url}: timed out after {timeout_s:g} s; {received} bytes in")
            try:
                block = read(remaining)
            except Exception as exc:  # noqa: BLE001 - classified, never lost
                failure = error(exc)
                raise RowError(failure.reason, f"{failure}; {received} bytes in") from None
            if not block:
                return received
            received += len(block)
            if received > max_bytes:
                raise RowError("too_large", f"{url}: over max_bytes {max_bytes} (stopped at {received} bytes)")
            sink.write(block)


def _status_error(url: str, code: int, reason: Any) -> RowError:
    message = f"{url}: HTTP {code} {reason or http.client.responses.get(code, '')}".rstrip()
    if code in (404, 410):
        return RowError("not_found", message)
    if code in (408, 429) or 500 <= code < 600:
        return RowError("transient", message)
    return RowError("http_error", message)


def _network_error(url: str, exc: BaseException, timeout_s: float) -> RowError:
    """A failed HTTP connection or read, by reason: the network's troubles are transient."""
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException):
        exc = exc.reason
    if isinstance(exc, TimeoutError):  # socket.timeout too
        return RowError("transient", f"{url}: timed out (limit {timeout_s:g} s)")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return RowError("http_error", f"{url}: TLS certificate not trusted ({exc})")
    if isinstance(exc, socket.gaierror):
        temporary = exc.errno in (socket.EAI_AGAIN, getattr(socket, "EAI_SYSTEM", None))
        return RowError("transient" if temporary else "http_error", f"{url}: cannot resolve host ({exc})")
    if isinstance(exc, http.client.IncompleteRead):
        return RowError("transient", f"{url}: truncated body ({exc!r})")
    if isinstance(exc, (OSError, http.client.HTTPException)):  # reset, refused, unreachable, bad status line
        return RowError("transient", f"{url}: {type(exc).__name__}: {exc}")
    if isinstance(exc, urllib.error.URLError):
        return RowError("http_error", f"{url}: {exc.reason}")
    if isinstance(exc, ValueError):  # unknown url type, ...
        return RowError("http_error", f"{url}: unsupported URL ({exc})")
    return RowError("http_error", f"{url}: {type(exc).__name__}: {exc}")


def _storage_error(url: str, exc: BaseException) -> RowError:
    """A failed fsspec open or read: missing is ``not_found``, refused or unknown is permanent."""
    if isinstance(exc, (FileNotFoundError, IsADirectoryError)) or getattr(exc, "errno", None) == errno.ENOENT:
        return RowError("not_found", f"{url}: no such file")
    if isinstance(exc, PermissionError):
        return RowError("http_error", f"{url}: permission denied ({exc})")
    if isinstance(exc, (ImportError, ValueError, NotImplementedError)):  # unknown protocol, its package missing
        return RowError("http_error", f"{url}: unsupported URL ({type(exc).__name__}: {exc})")
    if isinstance(exc, OSError):  # timeouts, connections, throttling by the store
        return RowError("transient", f"{url}: {type(exc).__name__}: {exc}")
    return RowError("http_error", f"{url}: {type(exc).__name__}: {exc}")


STAGE = Stage(
    name="download",
    title="downloaded videos",
    upstream="ingest",
    schema=SCHEMA,
    process=download_video,
    settings=settings,
    description="fetch each ingested URL once (yt-dlp or HTTP) into the artifacts, politely and resumably",
    threads=lambda cfg: cfg.download.workers,
    retry_errors=("transient",),
    unkeyed=("command", "workers", "per_host_per_s", "retries", "backoff_s", "timeout_s", "max_bytes", "data_dir"),
    input_fields=("id", "path", "url", "key"),  # ingest's key covers the reference stems it recorded
)
