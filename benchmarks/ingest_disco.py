"""Benchmark ingest of DISCO-10M metadata at scale (rows per second, peak memory), and the download stage.

**Ingest.** For each ``--rows`` N, writes a DISCO-10M-shaped Parquet of N rows, streamed a row group
(50,000 rows) at a time: the published column names and types (``video_url_youtube`` with unique
11-character ids, ``video_duration_youtube_sec`` uniform in 5..900 s so that a share falls outside
``ingest.min/max_duration_s`` and is rejected, the Spotify columns, the four similarities, the
512-d float32 ``audio_embedding_spotify``) and two columns ingest does not read. For a
``--media-share`` of the rows a tiny real MP4 is linked under a media folder as ``<youtube id>.mp4``
(``ingest.media_root``). Then, each in its own process pinned to one core (``OMP_NUM_THREADS=1``,
``taskset``) over a fresh artifacts folder, so that its peak RSS is its own: ``ingest`` of the file,
and a second ingest of the same file (every row already known: the cost of a resume). Targets
(the DISCO-10M scale requirement): peak RSS at most 1536 MB and at least 50,000 input rows/s, at any N.

**Download.** Serves a real small MP4 from a local ``ThreadingHTTPServer`` (127.0.0.1) under
``/v/<i>.mp4``, ingests a ``--download-rows`` table of such URLs as one batch and runs the
``download`` stage over it (``run_stage("download", cfg, batch=...)``) with the built-in HTTP
downloader (``download.command=null``), 8 threads and no effective rate limit; then ``--ytdlp-rows``
of them with the default yt-dlp command (one process per file). Skipped, with the reason in the
JSON, when the stage is not there (``vmas.curation.download`` / ``STAGES["download"]``).

    python benchmarks/ingest_disco.py --out artifacts/benchmarks/ingest_disco.json
    python benchmarks/ingest_disco.py --rows 20000 --download-rows 40        # a quick look

The JSON holds ``machine`` (CPU model, cores), ``ingest`` (per N: rows, new, known, rejected,
batches, seconds, rows_per_second, peak_rss_mb, rss_after_import_mb, parquet_mb, manifest_mb,
write_seconds, media_links, and ``second_run`` with its seconds, known and peak RSS), ``download``
(``builtin`` and ``ytdlp``: files, mb, seconds, files_per_second, mb_per_second, errors), ``targets``
and ``meets_targets`` (per N). MB are 2**20 bytes. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import cpu_model  # benchmarks/ is on the path when a script runs

ROW_GROUP = 50_000
EMBEDDING_DIM = 512
MAX_MEDIA_LINKS = 5_000
TARGET_PEAK_RSS_MB = 1536
TARGET_ROWS_PER_SECOND = 50_000
YOUTUBE_WATCH = "https://www.youtube.com/watch?v="
BASE64URL = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
BASE62 = BASE64URL[:62]
HEX = b"0123456789abcdef"
MB = 1 << 20


# --- the DISCO-shaped table --------------------------------------------------------------------------


def _embedding_type():
    """``fixed_size_list<float32, 512>`` if pyarrow reads such a Parquet column back, else ``list<float32>``."""
    import io

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    fixed = pa.list_(pa.float32(), EMBEDDING_DIM)
    values = np.arange(3 * EMBEDDING_DIM, dtype=np.float32)
    table = pa.table({"e": pa.FixedSizeListArray.from_arrays(pa.array(values), EMBEDDING_DIM)})
    try:
        sink = io.BytesIO()
        pq.write_table(table, sink)
        sink.seek(0)
        back = pa.Table.from_batches(list(pq.ParquetFile(sink).iter_batches()))
        ok = back.column("e").type == fixed and np.array_equal(
            back.column("e").combine_chunks().flatten().to_numpy(), values)
    except Exception:  # noqa: BLE001 - any failure: use the variable list
        ok = False
    return fixed if ok else pa.list_(pa.float32())


def _schema(embedding_type):
    import pyarrow as pa

    return pa.schema([
        ("video_url_youtube", pa.string()),
        ("video_title_youtube", pa.string()),
        ("video_duration_youtube_sec", pa.float64()),
        ("video_view_count_youtube", pa.int64()),  # not read by ingest
        ("track_name_spotify", pa.string()),
        ("primary_artist_name_spotify", pa.string()),
        ("track_id_spotify", pa.string()),
        ("artist_id_spotify", pa.string()),
        ("album_id_spotify", pa.string()),
        ("preview_url_spotify", pa.string()),
        ("isrc", pa.string()),  # not read by ingest (track_id_spotify comes first)
        ("similarity_duration", pa.float32()),
        ("similarity_query_video_title", pa.float32()),
        ("similarity_query_description", pa.float32()),
        ("similarity_audio", pa.float32()),
        ("audio_embedding_spotify", embedding_type),
    ])


def _strings(matrix):
    """An ``(m, L)`` uint8 matrix as m strings of L bytes each (no Python object per row)."""
    import numpy as np
    import pyarrow as pa

    m, width = matrix.shape
    offsets = np.arange(0, m * width + 1, width, dtype=np.int32)
    return pa.StringArray.from_buffers(m, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(matrix)))


def _random_strings(rng, m: int, width: int, alphabet: bytes):
    import numpy as np

    table = np.frombuffer(alphabet, dtype=np.uint8)
    return _strings(table[rng.integers(0, len(alphabet), size=(m, width))])


def _youtube_ids(start: int, m: int, seed: int):
    """11-character YouTube-like ids of rows ``start..start+m``: unique over the whole file (an odd
    multiplier mod 2**64 is a bijection, and 11 base64 digits hold 66 bits)."""
    import numpy as np

    index = np.arange(start, start + m, dtype=np.uint64)
    x = index * np.uint64(0x9E3779B97F4A7C15) + np.uint64(seed * 0x632BE59BD9B4E019 % (1 << 64))
    digits = np.stack([(x >> np.uint64(6 * k)) & np.uint64(63) for k in range(11)], axis=1)
    return np.frombuffer(BASE64URL, dtype=np.uint8)[digits.astype(np.int64)]


def write_disco(path: Path, rows: int, *, seed: int = 0, media_dir: Path | None = None, media_file: Path | None = None,
                media_share: float = 0.0, url_prefix: str | None = None,
                durations: tuple[float, float] = (5.0, 900.0)) -> dict:
    """Write a DISCO-10M-shaped Parquet of ``rows`` rows, one row group of :data:`ROW_GROUP` rows at a time.

    ``url_prefix``: URLs are ``<prefix><row>.mp4`` instead of YouTube watch URLs. With ``media_dir``,
    every ``1/media_share``-th row (at most :data:`MAX_MEDIA_LINKS`) gets ``<media_dir>/<id>.mp4``, a
    hard link (else a symlink) to ``media_file``. Returns what was written."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    started = time.perf_counter()
    embedding_type = _embedding_type()
    schema = _schema(embedding_type)
    rng = np.random.default_rng(seed)
    n_artists = 5_000
    artist_names = pc.binary_join_element_wise(
        pa.array(rng.choice(["The", "DJ", "Lil", "MC", "Los", "Les", "Die", "Big"], n_artists)),
        pa.array([f"Artist{k}" for k in range(n_artists)]), " ")
    artist_ids = _random_strings(rng, n_artists, 22, BASE62)
    stride = max(1, round(1 / media_share)) if media_dir is not None and media_share > 0 else 0
    links = 0
    if stride:
        media_dir.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, ROW_GROUP):
            m = min(ROW_GROUP, rows - start)
            ids_matrix = _youtube_ids(start, m, seed)
            ids = _strings(ids_matrix)
            if url_prefix is None:
                urls = pc.binary_join_element_wise(YOUTUBE_WATCH, ids, "")
            else:
                urls = pc.binary_join_element_wise(
                    url_prefix, pa.array(np.arange(start, start + m)).cast(pa.string()), ".mp4", "")
            artist = rng.integers(0, n_artists, m)
            artists = artist_names.take(pa.array(artist))
            tracks = pc.binary_join_element_wise("Track ", ids, "")
            titles = pc.binary_join_element_wise(artists, " - ", tracks, " (Official Video)", "")
            embedding = rng.standard_normal((m, EMBEDDING_DIM), dtype=np.float32)
            embedding /= np.linalg.norm(embedding, axis=1, keepdims=True)
            flat = pa.array(embedding.ravel())
            if pa.types.is_fixed_size_list(embedding_type):
                embeddings = pa.FixedSizeListArray.from_arrays(flat, EMBEDDING_DIM)
            else:
                embeddings = pa.ListArray.from_arrays(
                    pa.array(np.arange(0, (m + 1) * EMBEDDING_DIM, EMBEDDING_DIM, dtype=np.int32)), flat)
            no_preview = rng.random(m) < 0.1  # DISCO-10M has rows without a preview URL
            preview = pc.if_else(pa.array(no_preview), pa.nulls(m, pa.string()),
                                 pc.binary_join_element_wise("https://p.scdn.co/mp3-preview/",
                                                             _random_strings(rng, m, 40, HEX), ""))

            def sim():
                return pa.array(rng.random(m, dtype=np.float32))

            table = pa.table([
                urls, titles, pa.array(rng.uniform(*durations, m)), pa.array(rng.integers(0, 10**8, m)),
                tracks, artists, _random_strings(rng, m, 22, BASE62), artist_ids.take(pa.array(artist)),
                _random_strings(rng, m, 22, BASE62), preview, _random_strings(rng, m, 12, BASE62[:36]),
                sim(), sim(), sim(), sim(), embeddings,
            ], schema=schema)
            writer.write_table(table, row_group_size=ROW_GROUP)
            if stride:
                for i in range(-start % stride, m, stride):
                    if links >= MAX_MEDIA_LINKS:
                        break
                    target = media_dir / f"{ids_matrix[i].tobytes().decode()}.mp4"
                    try:
                        os.link(media_file, target)
                    except OSError:
                        target.symlink_to(media_file)
                    links += 1
            del table, embedding, embeddings, flat
    return {"rows": rows, "parquet_mb": round(path.stat().st_size / MB, 1), "write_seconds":
            round(time.perf_counter() - started, 2), "media_links": links, "embedding_type": str(embedding_type)}


def _make_mp4(path: Path, width: int, height: int, frames: int, seed: int = 0) -> Path:
    """A real H.264 MP4 of noise frames (incompressible: its size grows with the frame count)."""
    import numpy as np

    from vmas.media import write_mp4

    rng = np.random.default_rng(seed)
    write_mp4(path, (rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(frames)), fps=10)
    return path


# --- children: one measurement each, so that the peak RSS is its own ------------------------------------


def _rss_now_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def _peak_rss_mb(who=None) -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF if who is None else who).ru_maxrss / 1024, 1)


def _size_mb(path: Path) -> float:
    if path.is_file():
        return round(path.stat().st_size / MB, 1)
    return round(sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / MB, 1) if path.exists() else 0.0


def _config(spec: dict):
    from vmas.config import load_config

    return load_config(profile=spec["profile"], overrides=spec["overrides"])


def _child_ingest(spec: dict) -> dict:
    if hasattr(os, "sched_setaffinity"):  # also when taskset pinned it already
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    rss_start = _rss_now_mb()
    from vmas.curation.ingest import REJECTED_DIR, ingest
    from vmas.layout import manifest_dir

    cfg = _config(spec)
    rss_import = _rss_now_mb()
    started = time.perf_counter()
    counts = ingest(cfg, manifest_dir(cfg, "ingest"), disco=[spec["file"]], progress=False)
    seconds = time.perf_counter() - started
    rows = spec["rows"]
    return {"rows": rows, "new": counts["new"], "known": counts["known"], "duplicate": counts["duplicate"],
            "rejected": counts["rejected"], "batches": len(counts["batches"]), "seconds": round(seconds, 2),
            "rows_per_second": round(rows / seconds) if seconds else None, "peak_rss_mb": _peak_rss_mb(),
            "rss_at_start_mb": rss_start, "rss_after_import_mb": rss_import,
            "manifest_mb": _size_mb(manifest_dir(cfg, "ingest")),
            "rejected_mb": _size_mb(manifest_dir(cfg, "ingest").parent / REJECTED_DIR),
            "cpus": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None}


def _child_download(spec: dict) -> dict:
    try:
        import vmas.curation.download  # noqa: F401
        from vmas.curation import STAGES
    except ImportError as exc:
        return {"skipped": f"vmas.curation.download cannot be imported: {exc}"}
    if "download" not in STAGES:
        return {"skipped": "the download stage is not registered in vmas.curation.STAGES"}
    from vmas.curation.ingest import ingest
    from vmas.curation.runner import run_stage
    from vmas.layout import manifest_dir
    from vmas.manifest import ERROR, Manifest

    cfg = _config(spec)
    counts = ingest(cfg, manifest_dir(cfg, "ingest"), disco=[spec["file"]], progress=False)
    if counts["batch"] is None:
        raise RuntimeError(f"expected the download table to ingest as one batch, got {counts}")
    started = time.perf_counter()
    report = run_stage("download", cfg, batch=counts["batch"], progress=False)
    seconds = time.perf_counter() - started
    group = Manifest(manifest_dir(cfg, "download")).group(counts["batch"])
    done = group.read(["bytes", "status", "attempts", ERROR]).to_pylist()
    ok = [r for r in done if r[ERROR] is None]
    errors = [r[ERROR] for r in done if r[ERROR] is not None]
    size = sum(r["bytes"] or 0 for r in ok) / MB
    attempts = [r["attempts"] or 0 for r in done]
    return {"rows": spec["rows"], "ingested": counts["new"], "files": len(ok), "mb": round(size, 2),
            "seconds": round(seconds, 2), "files_per_second": round(len(ok) / seconds, 2) if seconds else None,
            "mb_per_second": round(size / seconds, 2) if seconds else None, "errors": len(errors),
            "errors_by_reason": report.errors_by_reason, "first_errors": errors[:3],
            "retried": sum(a > 1 for a in attempts),
            "statuses": sorted({r["status"] for r in ok}), "workers": cfg.download.workers,
            "command": cfg.download.command, "peak_rss_mb": _peak_rss_mb(),
            "peak_rss_subprocess_mb": _peak_rss_mb(resource.RUSAGE_CHILDREN)}


CHILDREN = {"ingest": _child_ingest, "download": _child_download}


def _run_child(kind: str, spec: dict, pin: bool) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, str(Path(__file__).resolve()), "--child", kind, json.dumps(spec)]
    if pin and shutil.which("taskset") and hasattr(os, "sched_getaffinity"):
        command = ["taskset", "-c", str(min(os.sched_getaffinity(0))), *command]
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        sys.stderr.write(result.stderr[-4000:])
        raise RuntimeError(f"{kind} child failed (exit {result.returncode})")
    return json.loads(result.stdout.strip().splitlines()[-1])


# --- the local media server ------------------------------------------------------------------------------


def _serve(body: bytes):
    """A ThreadingHTTPServer on 127.0.0.1 serving ``body`` as ``/v/<anything>.mp4`` (with ranges)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    served = {"requests": 0, "errors": []}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def _head(self) -> bytes | None:
            served["requests"] += 1
            if not (self.path.startswith("/v/") and self.path.endswith(".mp4")):
                self.send_error(404)
                return None
            data, status = body, 200
            wanted = self.headers.get("Range", "")
            if wanted.startswith("bytes=") and "," not in wanted:
                first, _, last = wanted[6:].partition("-")
                lo = int(first) if first else max(len(body) - int(last or 0), 0)
                hi = int(last) if first and last else len(body) - 1
                if lo >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                data, status = body[lo:hi + 1], 206
            self.send_response(status)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Accept-Ranges", "bytes")
            if status == 206:
                self.send_header("Content-Range", f"bytes {lo}-{lo + len(data) - 1}/{len(body)}")
            self.end_headers()
            return data

        def do_HEAD(self):
            self._head()

        def do_GET(self):
            data = self._head()
            if data:
                self.wfile.write(data)

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 256  # listen backlog: the default 5 drops connections of 8+ threads (1 s SYN retries)

        def handle_error(self, request, client_address):  # counted, not printed
            served["errors"].append(repr(sys.exc_info()[1]))

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="media-server", daemon=True)
    thread.start()
    return server, served


# --- the benchmark ---------------------------------------------------------------------------------------


def _machine() -> dict:
    model = cpu_model()
    import pyarrow

    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(), "pyarrow": pyarrow.__version__,
            "ingest_pinned_to_one_core": bool(shutil.which("taskset") or hasattr(os, "sched_setaffinity"))}


def bench_ingest(args, work: Path, tiny_mp4: Path) -> list[dict]:
    results = []
    for n in args.rows:
        folder = work / f"ingest-{n}"
        folder.mkdir()
        table = folder / "disco.parquet"
        print(f"writing {n:,} rows to {table} ...", file=sys.stderr, flush=True)
        written = write_disco(table, n, seed=n, media_dir=folder / "media", media_file=tiny_mp4,
                              media_share=args.media_share)
        overrides = [f"paths.artifacts_dir={folder / 'artifacts'}", f"paths.data_dir={folder / 'data'}",
                     f"ingest.media_root={folder / 'media'}"]
        if args.batch_rows:
            overrides.append(f"ingest.batch_rows={args.batch_rows}")
        spec = {"profile": args.profile, "overrides": overrides, "file": str(table), "rows": n}
        print(f"ingesting {n:,} rows ...", file=sys.stderr, flush=True)
        first = _run_child("ingest", spec, pin=True)
        print(f"ingesting {n:,} rows again (all known) ...", file=sys.stderr, flush=True)
        second = _run_child("ingest", spec, pin=True)
        results.append({**first, "parquet_mb": written["parquet_mb"], "write_seconds": written["write_seconds"],
                        "media_links": written["media_links"], "embedding_type": written["embedding_type"],
                        "second_run": {k: second[k] for k in ("seconds", "rows_per_second", "new", "known", "rejected",
                                                              "peak_rss_mb")}})
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    return results


def bench_download(args, work: Path) -> dict:
    if args.download_rows <= 0:
        return {"skipped": "--download-rows 0"}
    body = _make_mp4(work / "served.mp4", 320, 240, 12).read_bytes()
    server, served = _serve(body)
    port = server.server_address[1]
    out = {"served_file_mb": round(len(body) / MB, 3)}
    try:
        for name, rows, command in (("builtin", args.download_rows, "null"), ("ytdlp", args.ytdlp_rows, None)):
            if rows <= 0:
                out[name] = {"skipped": "0 rows"}
                continue
            folder = work / f"download-{name}"
            folder.mkdir()
            table = folder / "urls.parquet"
            # the same host for both runs, other paths: no file is taken as already fetched
            write_disco(table, rows, seed=len(name), url_prefix=f"http://127.0.0.1:{port}/v/{name}-",
                        durations=(30.0, 300.0))
            overrides = [f"paths.artifacts_dir={folder / 'artifacts'}", f"paths.data_dir={folder / 'data'}",
                         f"ingest.batch_rows={max(rows, 1)}", f"download.workers={args.download_workers}",
                         "download.per_host_per_s=1000"]
            if command is not None:
                overrides.append(f"download.command={command}")
            print(f"downloading {rows} files ({name}) ...", file=sys.stderr, flush=True)
            before, errors_before = served["requests"], len(served["errors"])
            result = _run_child("download", {"profile": args.profile, "overrides": overrides, "file": str(table),
                                             "rows": rows}, pin=False)
            if "skipped" in result:
                print(f"download: skipped: {result['skipped']}", file=sys.stderr)
                return {**out, **result}
            out[name] = {**result, "http_requests": served["requests"] - before,
                         "server_errors": served["errors"][errors_before:][:5]}
            if not args.keep:
                shutil.rmtree(folder, ignore_errors=True)
    finally:
        server.shutdown()
        server.server_close()
    return out


def _print_table(result: dict) -> None:
    print(f"\nmachine: {result['machine']['cpu']}, {result['machine']['cores']} cores")
    print(f"{'rows':>10} {'new':>9} {'rejected':>9} {'batches':>7} {'seconds':>8} {'rows/s':>9} {'peak RSS':>9} "
          f"{'again s':>8} {'parquet':>9} {'manifest':>9}  targets")
    for r in result["ingest"]:
        print(f"{r['rows']:>10,} {r['new']:>9,} {r['rejected']:>9,} {r['batches']:>7} {r['seconds']:>8.1f} "
              f"{r['rows_per_second']:>9,} {r['peak_rss_mb']:>6.0f} MB {r['second_run']['seconds']:>8.1f} "
              f"{r['parquet_mb']:>6.0f} MB {r['manifest_mb']:>6.0f} MB  "
              f"{'met' if result['meets_targets'][str(r['rows'])] else 'MISSED'}")
    download = result["download"]
    if "skipped" in download:
        print(f"download: skipped ({download['skipped']})")
        return
    for name in ("builtin", "ytdlp"):
        d = download.get(name, {})
        if "skipped" in d or not d:
            print(f"download {name:8s}: skipped")
            continue
        print(f"download {name:8s}: {d['files']} files, {d['mb']:.1f} MB in {d['seconds']:.2f} s: "
              f"{d['files_per_second']:.1f} files/s, {d['mb_per_second']:.1f} MB/s, {d['errors']} errors "
              f"({d['workers']} threads)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000], help="table sizes to ingest")
    parser.add_argument("--media-share", type=float, default=0.001,
                        help="share of rows whose video is already under ingest.media_root")
    parser.add_argument("--download-rows", type=int, default=200,
                        help="files for the built-in downloader (0: no download part)")
    parser.add_argument("--ytdlp-rows", type=int, default=40, help="files for the yt-dlp command (0: skip it)")
    parser.add_argument("--download-workers", type=int, default=8)
    parser.add_argument("--batch-rows", type=int, default=None, help="ingest.batch_rows (default: the profile's)")
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--out", type=Path, default=Path("artifacts/benchmarks/ingest_disco.json"))
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (its path is printed)")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "SPEC"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child[0]](json.loads(args.child[1]))))
        return
    if args.download_rows <= 0:
        args.ytdlp_rows = 0
    work = Path(tempfile.mkdtemp(prefix="vmas-ingest-disco-"))
    try:
        tiny = _make_mp4(work / "tiny.mp4", 32, 32, 5)
        ingested = bench_ingest(args, work, tiny)
        download = bench_download(args, work)
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    meets = {str(r["rows"]): r["peak_rss_mb"] <= TARGET_PEAK_RSS_MB and r["rows_per_second"] >= TARGET_ROWS_PER_SECOND
             for r in ingested}
    result = {"benchmark": "ingest_disco", "profile": args.profile, "machine": _machine(),
              "media_share": args.media_share, "ingest": ingested, "download": download,
              "targets": {"peak_rss_mb_max": TARGET_PEAK_RSS_MB, "rows_per_second_min": TARGET_ROWS_PER_SECOND},
              "meets_targets": meets}
    from vmas.io import atomic_write_json

    atomic_write_json(args.out, result)
    _print_table(result)
    print(f"\nwritten {args.out}")


if __name__ == "__main__":
    main()
