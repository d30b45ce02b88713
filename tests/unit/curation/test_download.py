"""The download stage against a real HTTP server on 127.0.0.1: the built-in downloader, yt-dlp, the rate limit."""

from __future__ import annotations

import collections
import logging
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urlparse

import av
import numpy as np
import pytest

from vmas.config import YT_DLP
from vmas.curation import download
from vmas.curation.batches import video_extensions
from vmas.curation.download import (SCHEMA, STAGE, HostRateLimiter, classify_message, download_video, settings,
                                    target_path)
from vmas.errors import RowError
from vmas.media import write_mp4
from vmas.media.stems import REFERENCE_COLUMNS, REFERENCE_INSTRUMENTAL, REFERENCE_VOCALS

SLOW_S = 3.0  # /slow.mp4 waits this long before answering; the tests' timeout is far below
MAX_BYTES = 200_000
BIG = MAX_BYTES + 50_000
YOUTUBE_ID = "dQw4w9WgXcQ"


class Server:
    """A ThreadingHTTPServer serving a real video and its failure modes, counting requests per path."""

    def __init__(self, video: bytes):
        self.video = video
        self.lock = threading.Lock()
        self.hits: collections.Counter[str] = collections.Counter()
        self.times: dict[str, list[float]] = collections.defaultdict(list)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def reset(self) -> None:
        with self.lock:
            self.hits.clear()
            self.times.clear()

    def count(self, path: str) -> int:
        with self.lock:
            return self.hits[path]


def _handler(server: Server):
    class Handler(BaseHTTPRequestHandler):  # HTTP/1.0: one request per connection, closed after
        def log_message(self, format, *args):  # noqa: A002 - the base class's name
            pass

        def _send(self, body: bytes, length: int | None = None, chunk: int = 1 << 14) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            if length is not None:
                self.send_header("Content-Length", str(length))
            self.end_headers()
            for i in range(0, len(body), chunk):
                self.wfile.write(body[i:i + chunk])

        def do_GET(self):
            parsed = urlparse(self.path)
            path, query = parsed.path, parse_qs(parsed.query)
            with server.lock:
                server.hits[path] += 1
                server.times[path].append(time.monotonic())
                n = server.hits[path]
            video = server.video
            try:
                if path == "/ok.mp4":
                    self._send(video, len(video))
                elif path == "/broken.mp4":
                    self.send_error(500)
                elif path == "/flaky.mp4":
                    self.send_error(503) if n <= 2 else self._send(video, len(video))
                elif path == "/slow.mp4":
                    time.sleep(SLOW_S)
                    self._send(video, len(video))
                elif path == "/trickle.mp4":  # every read is quick, the whole file is not
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(video)))
                    self.end_headers()
                    for i in range(0, len(video), 200):
                        self.wfile.write(video[i:i + 200])
                        self.wfile.flush()
                        time.sleep(0.1)
                elif path == "/truncated.mp4":  # announces more than it sends, then hangs up
                    self._send(video[: len(video) // 2], len(video) + 5000)
                    self.close_connection = True
                elif path == "/big.mp4":
                    body = b"\0" * BIG
                    self._send(body, None if "stream" in query else len(body))
                else:
                    self.send_error(404)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout under test)
                pass

    return Handler


def _video_bytes(folder: Path) -> bytes:
    """A real 1 s, 64x64, 25 fps H.264 + AAC mp4 (about 10 kB), written with PyAV."""
    sr = 16000
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(sr) / sr)
    frames = [np.full((64, 64, 3), (i * 9) % 255, np.uint8) for i in range(25)]
    write_mp4(folder / "video.mp4", frames, 25, tone[None], sr)
    return (folder / "video.mp4").read_bytes()


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> bytes:
    return _video_bytes(tmp_path_factory.mktemp("video"))


@pytest.fixture(scope="module")
def http_server(video):
    server = Server(video)
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()
    server.thread.join(timeout=5)


@pytest.fixture
def server(http_server) -> Server:
    http_server.reset()
    return http_server


def _settings(tmp_path: Path, **over) -> dict:
    base = {"command": None, "workers": 4, "per_host_per_s": 1000.0, "retries": 2, "backoff_s": 0.0,
            "timeout_s": 10.0, "max_bytes": MAX_BYTES, "media_root": None,
            "extensions": ["mp4", "mkv", "webm", "mov"], "out_dir": str(tmp_path / "out")}
    return {**base, **over}


def _row(url: str | None, ident: str = "v1", path: str | None = None) -> dict:
    return {"id": ident, "path": path, "url": url, "batch": "b1", "source": "test", "meta": "{}",
            REFERENCE_INSTRUMENTAL: "/stems/v1.instrumental.wav", REFERENCE_VOCALS: None}


def _files(tmp_path: Path) -> list[str]:
    """Every file under the stage's output folder (temporary ones included), relative."""
    out = tmp_path / "out"
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) if out.exists() else []


def _fails(reason: str, row: dict, s: dict) -> RowError:
    with pytest.raises(RowError) as info:
        download_video(row, s)
    assert info.value.reason == reason, str(info.value)
    assert row["url"] in str(info.value)
    return info.value


def _assert_playable(path: str | Path) -> None:
    with av.open(str(path)) as container:
        assert container.streams.video and container.streams.audio
        frame = next(container.decode(video=0))
        assert (frame.width, frame.height) == (64, 64)


# --- the built-in downloader (command: null) ---------------------------------------------------------------


def test_downloads_into_place_atomically_and_carries_the_stems(server, video, tmp_path):
    [out] = download_video(_row(server.url("ok.mp4")), _settings(tmp_path))
    target = tmp_path / "out" / "b1" / "v1.mp4"
    assert out["path"] == str(target) and out["status"] == "downloaded"
    assert out["url"] == server.url("ok.mp4") and out["attempts"] == 1 and out["seconds"] > 0
    assert out["bytes"] == len(video) and target.read_bytes() == video
    assert _files(tmp_path) == ["b1/v1.mp4"]  # the temporary file was renamed, nothing else is left
    assert {c: out[c] for c in REFERENCE_COLUMNS} == {REFERENCE_INSTRUMENTAL: "/stems/v1.instrumental.wav",
                                                       REFERENCE_VOCALS: None}
    assert set(out) == {"path", "url", "status", "bytes", "seconds", "attempts", *REFERENCE_COLUMNS}
    _assert_playable(out["path"])
    assert server.count("/ok.mp4") == 1


def test_a_finished_target_is_not_fetched_again(server, tmp_path):
    s = _settings(tmp_path)
    download_video(_row(server.url("ok.mp4")), s)
    [again] = download_video(_row(server.url("ok.mp4")), s)
    assert (again["status"], again["attempts"], again["seconds"]) == ("downloaded", 0, 0.0)
    assert server.count("/ok.mp4") == 1


def test_not_found_is_not_retried(server, tmp_path):
    error = _fails("not_found", _row(server.url("missing.mp4")), _settings(tmp_path, retries=3))
    assert "HTTP 404" in str(error)
    assert server.count("/missing.mp4") == 1
    assert _files(tmp_path) == []


def test_server_error_is_transient_after_every_retry(server, tmp_path):
    error = _fails("transient", _row(server.url("broken.mp4")), _settings(tmp_path, retries=2))
    assert "HTTP 500" in str(error) and "after 3 tries" in str(error)
    assert server.count("/broken.mp4") == 3
    assert _files(tmp_path) == []


def test_backoff_doubles_with_jitter(server, tmp_path, monkeypatch):
    jitter, slept = [], []
    monkeypatch.setattr(download, "random", SimpleNamespace(uniform=lambda a, b: jitter.append((a, b)) or 1.5))
    monkeypatch.setattr(download, "time", SimpleNamespace(monotonic=time.monotonic, sleep=slept.append))
    _fails("transient", _row(server.url("broken.mp4")), _settings(tmp_path, retries=2, backoff_s=0.1))
    assert jitter == [(0.5, 1.5)] * 2
    assert [s for s in slept if s > 0.05] == pytest.approx([0.15, 0.3])


def test_flaky_server_succeeds_on_the_third_try(server, video, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="vmas.curation.download"):
        [out] = download_video(_row(server.url("flaky.mp4")), _settings(tmp_path, retries=3))
    assert out["attempts"] == 3 and Path(out["path"]).read_bytes() == video
    assert server.count("/flaky.mp4") == 3
    assert sum("retrying" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO) == 2
    assert _files(tmp_path) == ["b1/v1.mp4"]


def test_slow_server_times_out_as_transient(server, tmp_path):
    error = _fails("transient", _row(server.url("slow.mp4")), _settings(tmp_path, retries=1, timeout_s=0.5))
    assert "timed out" in str(error)
    assert server.count("/slow.mp4") == 2
    assert _files(tmp_path) == []


def test_the_timeout_is_for_the_whole_file(server, video, tmp_path):
    """Each block comes quickly (0.1 s apart), but the file takes 5 s: the 0.6 s deadline still holds."""
    error = _fails("transient", _row(server.url("trickle.mp4")), _settings(tmp_path, retries=0, timeout_s=0.6))
    assert "timed out" in str(error)
    assert int(re.search(r"(\d+) bytes in", str(error)).group(1)) < len(video)  # it gave up part way
    assert _files(tmp_path) == []


def test_truncated_body_is_transient_and_leaves_no_file(server, tmp_path):
    error = _fails("transient", _row(server.url("truncated.mp4")), _settings(tmp_path, retries=1))
    assert "truncated" in str(error)
    assert server.count("/truncated.mp4") == 2
    assert _files(tmp_path) == []


@pytest.mark.parametrize("query", ["", "?stream=1"], ids=["content-length", "no-content-length"])
def test_too_large_is_not_retried(server, tmp_path, query):
    error = _fails("too_large", _row(server.url("big.mp4" + query)), _settings(tmp_path, retries=2))
    assert str(MAX_BYTES) in str(error)
    assert server.count("/big.mp4") == 1
    assert _files(tmp_path) == []


def test_local_and_present_rows_fetch_nothing(server, video, tmp_path):
    local = tmp_path / "local.mp4"
    local.write_bytes(video)
    s = _settings(tmp_path, media_root=str(tmp_path / "media"))
    [out] = download_video(_row(server.url("ok.mp4"), path=str(local)), s)
    assert (out["status"], out["path"], out["bytes"], out["attempts"]) == ("local", str(local), len(video), 0)

    (tmp_path / "media").mkdir()
    (tmp_path / "media" / f"{YOUTUBE_ID}.webm").write_bytes(video)
    [out] = download_video(_row(server.url(f"watch?v={YOUTUBE_ID}")), s)
    assert (out["status"], out["attempts"]) == ("present", 0)
    assert out["path"] == str(tmp_path / "media" / f"{YOUTUBE_ID}.webm")
    assert sum(server.hits.values()) == 0
    assert _files(tmp_path) == []


def test_a_missing_local_file_is_fetched_from_its_url_or_fails(server, video, tmp_path):
    gone = str(tmp_path / "gone.mp4")
    [out] = download_video(_row(server.url("ok.mp4"), path=gone), _settings(tmp_path))
    assert out["status"] == "downloaded" and Path(out["path"]).read_bytes() == video
    with pytest.raises(RowError) as info:
        download_video(_row(None, path=gone), _settings(tmp_path))
    assert info.value.reason == "missing" and gone in str(info.value)


def test_other_schemes_go_through_fsspec(video, tmp_path):
    source = tmp_path / "src" / "clip.mkv"
    source.parent.mkdir()
    source.write_bytes(video)
    [out] = download_video(_row(source.as_uri()), _settings(tmp_path, command=YT_DLP))  # not http: no yt-dlp
    assert out["path"] == str(tmp_path / "out" / "b1" / "v1.mkv") and Path(out["path"]).read_bytes() == video
    _fails("not_found", _row((tmp_path / "src" / "nope.mp4").as_uri(), ident="v2"), _settings(tmp_path))
    _fails("too_large", _row(source.as_uri(), ident="v3"), _settings(tmp_path, max_bytes=100))


def test_target_suffix_comes_from_known_extensions():
    s = {"out_dir": "/o", "extensions": ["mp4", "webm"]}
    assert target_path({"id": "a", "batch": "b", "url": "https://h/x/clip.WEBM?sig=1"}, s) == Path("/o/b/a.webm")
    assert target_path({"id": "a", "batch": "b", "url": "https://h/watch?v=abcdefghijk"}, s) == Path("/o/b/a.mp4")
    assert target_path({"id": "a", "batch": "b", "url": "https://h/x.bin"}, s) == Path("/o/b/a.mp4")


# --- the default yt-dlp command, run for real (its generic extractor) -------------------------------------


def test_yt_dlp_downloads_a_direct_video(server, video, tmp_path):
    [out] = download_video(_row(server.url("ok.mp4")), _settings(tmp_path, command=YT_DLP))
    assert out["status"] == "downloaded" and out["attempts"] == 1
    assert Path(out["path"]).read_bytes() == video
    assert _files(tmp_path) == ["b1/v1.mp4"]
    _assert_playable(out["path"])


def test_yt_dlp_failures_are_classified(server, tmp_path):
    s = _settings(tmp_path, command=YT_DLP, retries=0)
    error = _fails("not_found", _row(server.url("missing.mp4"), ident="a"), s)
    assert "HTTP Error 404" in str(error)
    assert server.count("/missing.mp4") == 1
    error = _fails("transient", _row(server.url("broken.mp4"), ident="b"), s)
    assert "HTTP Error 500" in str(error)
    _fails("too_large", _row(server.url("big.mp4"), ident="c"), s)  # yt-dlp skips it (exit 0, no file)
    assert not [f for f in _files(tmp_path) if not f.endswith(".part")]


def test_yt_dlp_truncated_download_is_transient_and_retried(server, tmp_path):
    error = _fails("transient", _row(server.url("truncated.mp4")), _settings(tmp_path, command=YT_DLP, retries=1))
    assert "more expected" in str(error) and "after 2 tries" in str(error)
    assert server.count("/truncated.mp4") >= 2  # each try: the extractor's request, then the download's
    assert not (tmp_path / "out" / "b1" / "v1.mp4").exists()
    assert all(f.endswith(".part") for f in _files(tmp_path))  # yt-dlp's partial file, kept to continue


@pytest.mark.parametrize("reason, text", [
    ("not_found", "ERROR: [youtube] abcdefghijk: Video unavailable. This video has been removed by the uploader"),
    ("not_found", "ERROR: [youtube] abcdefghijk: Private video. Sign in if you've been granted access"),
    ("not_found", "ERROR: [generic] x: Unable to download webpage: HTTP Error 410: Gone"),
    ("transient", "ERROR: [generic] x: Unable to download webpage: HTTP Error 503: Service Unavailable"),
    ("transient", "ERROR: [generic] x: Unable to download webpage: HTTP Error 429: Too Many Requests"),
    ("transient", "ERROR: [download] Got error: HTTPConnectionPool(host='h', port=80): Read timed out."),
    ("transient", "ERROR: Did not get any data blocks"),
    ("transient", "ERROR: [download] Got error: Downloaded 10 bytes, expected 20 bytes"),
    ("transient", "ERROR: [youtube] x: Sign in to confirm you\u2019re not a bot. Use --cookies-from-browser"),
    ("http_error", "ERROR: [generic] x: Unable to download webpage: HTTP Error 403: Forbidden"),
    ("http_error", "ERROR: Unsupported URL: https://example.org/page"),
])
def test_yt_dlp_messages_are_classified(reason, text):
    assert classify_message(text) == reason


# --- politeness --------------------------------------------------------------------------------------------


def test_downloads_start_at_most_per_host_per_s(server, tmp_path):
    """Six downloads in six threads at 5 a second: the server sees their starts spread over >= ~1 s."""
    s = _settings(tmp_path, per_host_per_s=5.0)
    rows = [_row(server.url("ok.mp4"), ident=f"r{i}") for i in range(6)]
    threads = [threading.Thread(target=download_video, args=(row, s)) for row in rows]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    starts = sorted(server.times["/ok.mp4"])
    assert len(starts) == 6 and len(_files(tmp_path)) == 6
    assert starts[-1] - starts[0] >= 0.9  # 5 gaps of 0.2 s, with margin
    assert min(b - a for a, b in zip(starts, starts[1:])) >= 0.1


def test_rate_limiter_spaces_each_host_on_its_own(monkeypatch):
    """On a fake clock: a host's starts are 1 / per_s apart; another host's first start waits for nothing."""
    now = [100.0]
    monkeypatch.setattr(download, "time", SimpleNamespace(monotonic=lambda: now[0],
                                                         sleep=lambda s: now.__setitem__(0, now[0] + s)))
    limiter = HostRateLimiter()
    assert [limiter.wait("https://a.example/x.mp4", 10.0) for _ in range(3)] == pytest.approx([100.0, 100.1, 100.2])
    assert limiter.wait("https://B.example:8443/y.mp4", 10.0) == pytest.approx(100.2)  # not 100.3
    assert limiter.wait("https://b.example/z.mp4", 10.0) == pytest.approx(100.3)  # same host, any port
    assert limiter.wait("https://a.example/x.mp4", 2.0) == pytest.approx(100.3)
    assert limiter.wait("https://a.example/x.mp4", 2.0) == pytest.approx(100.8)


# --- the stage ---------------------------------------------------------------------------------------------


def test_settings_and_stage(demo_config, tmp_path):
    got = settings(demo_config, tmp_path)
    assert got == {"command": YT_DLP, "workers": 8, "per_host_per_s": 2.0, "retries": 3, "backoff_s": 2.0,
                   "timeout_s": 600.0, "max_bytes": 512 * 1024 * 1024, "media_root": None,
                   "extensions": sorted(video_extensions()), "out_dir": str(tmp_path),
                   "data_dir": str(Path("data").resolve())}
    assert "data_dir" in STAGE.unkeyed  # where the files are read from does not change the result
    assert {"mp4", "mkv", "webm", "mov", "avi", "ogv", "ts"} <= set(got["extensions"])  # every video container
    assert STAGE.name == "download" and STAGE.upstream == "ingest" and STAGE.process is download_video
    assert STAGE.settings is settings and STAGE.threads(demo_config) == 8
    assert STAGE.retry_errors == ("transient",) and set(STAGE.unkeyed) < set(got)
    assert STAGE.input_fields == ("id", "path", "url", "key")
    assert {"path", "url", "status", "bytes", "seconds", "attempts", *REFERENCE_COLUMNS} <= set(SCHEMA.names)


# --- the stage as the pipeline runs it: ingest a URL list, `run_stage("download")` -----------------------------


def test_the_stage_resumes_retries_transient_failures_next_run_and_keeps_permanent_ones(server, demo_config,
                                                                                         tmp_path):
    """A path list of URLs becomes a batch; download fetches the good ones; a second run fetches nothing
    again, retries only the transient failure; --retry-failed retries the permanent one too."""
    from vmas.curation.ingest import ingest
    from vmas.curation.runner import run_stage
    from vmas.layout import manifest_dir
    from vmas.manifest import Manifest

    paths = demo_config.paths.model_copy(update={"artifacts_dir": tmp_path / "a"})
    fast = demo_config.download.model_copy(update={"command": None, "retries": 0, "backoff_s": 0.0,
                                                   "per_host_per_s": 1000.0, "timeout_s": 10.0, "workers": 3})
    cfg = demo_config.model_copy(update={"paths": paths, "download": fast})
    names = ["ok.mp4", "missing.mp4", "broken.mp4", "flaky.mp4"]
    (tmp_path / "urls.csv").write_text("uri\n" + "".join(f"{server.url(n)}?copy={i}\n" for i, n in enumerate(names)))
    [batch] = ingest(cfg, manifest_dir(cfg, "ingest"), path_manifests=[str(tmp_path / "urls.csv")],
                     progress=False)["batches"]

    first = run_stage("download", cfg, progress=False, batch=batch)
    assert (first.processed, first.rows, first.errors) == (4, 4, 3)
    assert first.errors_by_reason == {"not_found": 1, "transient": 2}  # flaky answers 503 twice, then the file
    rows = {r["url"].split("/")[-1].split("?")[0]: r for r in
            Manifest(manifest_dir(cfg, "download"), SCHEMA).group(batch).iter_rows()}
    assert rows["ok.mp4"]["status"] == "downloaded" and Path(rows["ok.mp4"]["path"]).parent.name == batch
    _assert_playable(rows["ok.mp4"]["path"])

    def hits() -> list[int]:
        return [server.count(f"/{n}") for n in names]

    before = hits()
    second = run_stage("download", cfg, progress=False, batch=batch)  # the two transient ones only
    assert (second.processed, second.skipped) == (2, 2)
    assert [a - b for a, b in zip(hits(), before)] == [0, 0, 1, 1]
    assert second.errors_by_reason == {"not_found": 1, "transient": 2}  # flaky: its second 503

    before = hits()
    third = run_stage("download", cfg, progress=False, batch=batch, retry_failed=True)
    assert third.processed == 3 and [a - b for a, b in zip(hits(), before)] == [0, 1, 1, 1]
    assert third.errors_by_reason == {"not_found": 1, "transient": 1}  # flaky's third request gave the file
