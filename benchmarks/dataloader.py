"""Benchmark training-data loading: WebDataset shards against per-clip files, with 1 and 2 DataLoader workers.

Builds a synthetic token set of ``--clips`` clips from ``--videos`` source videos in the real
formats, in a scratch folder: per clip a ``.npz`` (``codes`` ``[n_q, T]`` int16 below
``codec.cardinality``, ``beat_weights`` ``[T]`` float32) and an H.264 mp4 of ``video.frames`` frames
of ``video.size`` px (moving patterns under heavy noise, so it is not trivially small), listed in a tokenize
manifest; then runs the ``shard`` stage over it (``shard.max_bytes`` = ``--shard-mb``, so there are
several shards, ``train.val_share`` = 0.1). For ``train.data`` in (files, shards) and
``train.num_workers`` in (1, 2) it iterates ``TokenDataModule.train_dataloader()`` (batch 8, not
attached to a trainer: rank 0 of 1) for ``ceil(train clips / 8)`` batches, about one pass over the
train clips, decoding every clip (decord) as training does, and measures:

- ``clips_per_s``: clips over the wall time from ``iter()`` (worker start included) to the last batch;
- ``steady_clips_per_s``: the same without the first batch (worker start, the first shuffle buffer);
- ``peak_rss_mb_main`` and ``peak_rss_mb_per_worker``: RSS sampled every 50 ms (psutil) of this
  process and of each DataLoader worker (a child process), a worker's also from ``/proc/<pid>/status``
  VmHWM; a forked worker's RSS counts the pages it shares with the main process, so also
  ``peak_uss_mb_per_worker`` (its own pages, sampled every 250 ms).

**Index memory.** What each process holds to find the clips. Per-clip files: the tokenize manifest's
rows as ``read_index`` returns them (a list of dicts), measured with ``tracemalloc`` per clip and
extrapolated to ``--scale-clips`` (2.2 M) clips, times the readers (each DataLoader worker holds a copy:
fork's copy-on-write pages get copied as Python touches refcounts; ``with_main_mb`` adds the main
process's). Shards: ``read_shard_index`` (a list of ``ShardEntry``), per shard, extrapolated to
``scale clips x mean clip bytes / shard.max_bytes`` shards (the paper profile's ``shard.max_bytes``, 500 MB;
mean clip bytes as measured here; a paper clip, 96 frames of 224 px, is larger: at ~0.5 MB, ~2,200 shards).

    python benchmarks/dataloader.py --out artifacts/benchmarks/dataloader.json
    python benchmarks/dataloader.py --clips 60 --videos 12        # a quick look

The JSON holds ``machine`` (CPU model, cores, versions), ``settings``, ``dataset`` (clips, mp4 and
shard bytes, build and shard seconds), ``runs`` (per mode and workers: mode, workers, clips, batches,
seconds, clips_per_s, steady_clips_per_s, first_batch_s, peak_rss_mb_main, peak_rss_mb_per_worker,
peak_uss_mb_per_worker) and ``index_memory``. MB are 2**20 bytes. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import cpu_model  # benchmarks/ is on the path when a script runs

MB = 1 << 20
REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "demo.yaml"
SCALE_CONFIG = REPO / "configs" / "paper.yaml"  # its shard.max_bytes: the shard size at scale
BATCH = 8
VAL_SHARE = 0.1
MODES = ("files", "shards")
WORKERS = (1, 2)
SAMPLE_S = 0.05
USS_EVERY = 5  # samples: USS (smaps_rollup) every 250 ms


def _machine() -> dict:
    model = cpu_model()
    import numpy
    import pyarrow
    import torch

    try:
        import decord

        decord_version = decord.__version__
    except Exception:  # noqa: BLE001 - only a fact for the record
        decord_version = None
    return {"cpu": model, "cores": os.cpu_count(),
            "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
            "pyarrow": pyarrow.__version__, "decord": decord_version, "platform": platform.platform()}


# --- the synthetic token set ---------------------------------------------------------------------------


def _frames(rng, count: int, size: int):
    """``count`` ``[size, size, 3]`` uint8 frames: a drifting colour gradient and a moving bar, under heavy
    noise (H.264 keeps most of it: about 30 KB per demo clip, three times a plain one's)."""
    import numpy as np

    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = rng.uniform(0, 255, 3)
    speed = rng.uniform(-0.1, 0.1, 2)
    bar = rng.integers(2, max(3, size // 4))
    out = []
    for f in range(count):
        phase = x * (1 + speed[0] * f) + y * (1 + speed[1] * f)
        frame = base[None, None, :] + 80 * np.sin(2 * np.pi * (phase[..., None] + np.array([0, 0.33, 0.66]) + f / 25))
        left = (3 * f) % size
        frame[:, left:left + bar] = 255 - frame[:, left:left + bar]
        frame += rng.normal(0, 50, frame.shape)  # ~30 KB per 50-frame 32 px clip: several 4 MB shards
        out.append(np.clip(frame, 0, 255).astype(np.uint8))
    return out


def build_token_set(cfg, clips: int, videos: int, seed: int = 0) -> dict:
    """Per-clip ``.npz`` and mp4 files under the artifacts folder, and their tokenize manifest rows."""
    import numpy as np
    from tqdm.auto import tqdm

    from vmas.curation import STAGES
    from vmas.layout import manifest_dir, output_dir
    from vmas.manifest import Manifest
    from vmas.media import write_mp4

    started = time.perf_counter()
    tokens_dir, clip_dir = output_dir(cfg, "tokenize"), output_dir(cfg, "clip")
    tokens_dir.mkdir(parents=True, exist_ok=True)
    clip_dir.mkdir(parents=True, exist_ok=True)
    n_q, steps = cfg.codec.n_q, int(round(cfg.clip.seconds * cfg.codec.frame_rate))
    rng = np.random.default_rng(seed)
    rows, mp4_bytes, npz_bytes = [], 0, 0
    for i in tqdm(range(clips), desc="writing clips", unit="clip", file=sys.stderr):
        v, k = i % videos, i // videos
        cid = f"video{v}/{k:04d}"
        name = cid.replace("/", "-")
        codes = rng.integers(0, cfg.codec.cardinality, (n_q, steps)).astype(np.int16)
        weights = np.where(rng.random(steps) < 0.2, 1.0, 0.5).astype(np.float32)
        tokens, video = tokens_dir / f"{name}.npz", clip_dir / f"{name}.mp4"
        np.savez(tokens, codes=codes, beat_weights=weights)
        write_mp4(video, _frames(rng, cfg.video.frames, cfg.video.size), cfg.video.fps)
        mp4_bytes += video.stat().st_size
        npz_bytes += tokens.stat().st_size
        rows.append({"id": cid, "input_id": cid, "key": "bench", "error": None, "video_id": f"video{v}",
                     "video_path": str(video), "audio_path": "", "tokens_path": str(tokens),
                     "num_codebooks": n_q, "num_steps": steps, "token_rate": int(cfg.codec.frame_rate),
                     "beat_weights": weights.tolist(), "codec_sha256": "bench"})
    Manifest(manifest_dir(cfg, "tokenize"), STAGES["tokenize"].schema).append(rows)
    return {"clips": clips, "videos": videos, "codes_shape": [n_q, steps], "mp4_mb": round(mp4_bytes / MB, 2),
            "mean_mp4_kb": round(mp4_bytes / clips / 1024, 1), "npz_mb": round(npz_bytes / MB, 2),
            "build_seconds": round(time.perf_counter() - started, 2)}


def run_shard(cfg) -> dict:
    import pyarrow.parquet as pq

    from vmas.curation.shard import shard
    from vmas.data.shards import INDEX_FILE, join_url
    from vmas.layout import shard_url

    started = time.perf_counter()
    report = shard(cfg, progress=False)
    seconds = time.perf_counter() - started
    index = pq.read_table(join_url(shard_url(cfg), INDEX_FILE)).to_pylist()
    by_split = {s: [r for r in index if r["split"] == s] for s in ("train", "val")}
    total = sum(r["bytes"] for r in index)
    clips = sum(r["clips"] for r in index)
    return {"shards": report["shards"], "clips": report["clips"], "skipped": report["skipped"],
            "held_out_videos": report["held_out_videos"], "seconds": round(seconds, 2),
            "bytes": total, "mb": round(total / MB, 2), "mean_clip_bytes": round(total / clips) if clips else None,
            **{f"{s}_shards": len(r) for s, r in by_split.items()},
            **{f"{s}_clips": sum(x["clips"] for x in r) for s, r in by_split.items()},
            "mean_shard_mb": round(total / len(index) / MB, 2) if index else None}


# --- memory sampling ----------------------------------------------------------------------------------


def _vm_hwm_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class MemorySampler(threading.Thread):
    """Peak RSS of this process and of each child process (the DataLoader's workers), sampled every
    50 ms; the children's also from their VmHWM, and their USS every 250 ms."""

    def __init__(self):
        super().__init__(daemon=True)
        import psutil

        self.me = psutil.Process()
        self.stop_event = threading.Event()
        self.main_rss = 0
        self.rss: dict[int, int] = {}
        self.uss: dict[int, int] = {}
        self.procs: dict = {}

    def sample(self, with_uss: bool) -> None:
        import psutil

        try:
            self.main_rss = max(self.main_rss, self.me.memory_info().rss)
            children = self.me.children(recursive=True)
        except psutil.Error:
            return
        for child in children:
            proc = self.procs.setdefault(child.pid, child)
            try:
                rss = max(proc.memory_info().rss, _vm_hwm_kb(child.pid) * 1024)
                self.rss[child.pid] = max(self.rss.get(child.pid, 0), rss)
                if with_uss:
                    self.uss[child.pid] = max(self.uss.get(child.pid, 0), proc.memory_full_info().uss)
            except psutil.Error:
                continue  # it exited in between

    def run(self) -> None:
        n = 0
        while not self.stop_event.is_set():
            self.sample(n % USS_EVERY == 0)
            n += 1
            self.stop_event.wait(SAMPLE_S)

    def stop(self) -> None:
        self.stop_event.set()
        self.join()


# --- one loader run -------------------------------------------------------------------------------------


def run_loader(cfg, mode: str, workers: int) -> dict:
    import dataclasses

    from vmas.data.tokens import DataSettings, TokenDataModule

    cfg_mode = cfg.model_copy(update={"train": cfg.train.model_copy(update={
        "data": mode, "num_workers": workers, "batch_size": BATCH})})
    probe = TokenDataModule(DataSettings.from_config(cfg_mode, 1))
    probe.setup()
    train_clips, val_clips = probe.train_clips, probe.val_clips
    steps = math.ceil(train_clips / BATCH)
    dm = TokenDataModule(dataclasses.replace(probe.settings, max_steps=steps))
    dm.setup()
    loader = dm.train_dataloader()
    import psutil

    main_before = psutil.Process().memory_info().rss
    started = time.perf_counter()
    iterator = iter(loader)  # the workers start here (forked before the sampler thread exists)
    sampler = MemorySampler()
    sampler.start()
    clips = batches = 0
    first = None
    ids = set()
    try:
        for batch in iterator:
            n = len(batch["id"])
            if first is None:
                first = time.perf_counter()
                first_clips = n
            clips += n
            batches += 1
            ids.update(batch["id"])
    finally:
        end = time.perf_counter()
        sampler.stop()
        del iterator
    seconds = end - started
    steady = end - first if first is not None else 0.0
    worker_pids = sorted(sampler.rss)
    return {"mode": mode, "workers": workers, "clips": clips, "batches": batches, "train_clips": train_clips,
            "val_clips": val_clips, "distinct_clips": len(ids), "units": len(dm.train_source.counts),
            "seconds": round(seconds, 3), "clips_per_s": round(clips / seconds, 1) if seconds else None,
            "first_batch_s": round(first - started, 3) if first is not None else None,
            "steady_clips_per_s": round((clips - first_clips) / steady, 1) if steady > 0 else None,
            "rss_mb_main_before": round(main_before / MB, 1),
            "peak_rss_mb_main": round(max(sampler.main_rss, main_before) / MB, 1),
            "peak_rss_mb_per_worker": [round(sampler.rss[p] / MB, 1) for p in worker_pids],
            "peak_uss_mb_per_worker": [round(sampler.uss.get(p, 0) / MB, 1) for p in worker_pids]}


# --- index memory ----------------------------------------------------------------------------------------


def _deep_size(obj, seen=None) -> int:
    """sys.getsizeof over a structure of lists, dicts, tuples, dataclasses and scalars (each object once)."""
    import dataclasses

    seen = set() if seen is None else seen
    if id(obj) in seen or obj is None:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(_deep_size(k, seen) + _deep_size(v, seen) for k, v in obj.items())
    elif isinstance(obj, (list, tuple, set)):
        size += sum(_deep_size(x, seen) for x in obj)
    elif dataclasses.is_dataclass(obj):
        size += _deep_size(vars(obj), seen) if hasattr(obj, "__dict__") else 0
    return size


def _traced(build):
    """``(result, bytes retained by it, peak bytes while building)`` by tracemalloc (built twice: the
    first call warms imports and caches)."""
    import gc
    import tracemalloc

    build()
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        result = build()
        gc.collect()
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, after - before, peak - before


def _copies(mb: float, digits: int) -> dict:
    """Per DataLoader worker count: the workers' copies, and with the main process's."""
    return {str(w): {"workers_copies_mb": round(mb * w, digits), "with_main_mb": round(mb * (w + 1), digits)}
            for w in (1, 2, 4, 8)}


def index_memory(cfg, scale_clips: int, shard_bytes_at_scale: int) -> dict:
    from vmas.data.shards import read_shard_index
    from vmas.data.tokens import read_index
    from vmas.layout import manifest_dir, shard_url

    rows, retained, peak = _traced(lambda: read_index(manifest_dir(cfg, "tokenize")))
    n = len(rows)
    per_clip = retained / n
    per_clip_deep = _deep_size(rows) / n
    path_chars = sum(len(r["tokens_path"]) + len(r["video_path"]) for r in rows) / n
    files_mb = per_clip * scale_clips / MB
    files = {"clips_measured": n, "bytes_per_clip": round(per_clip, 1),
             "bytes_per_clip_getsizeof": round(per_clip_deep, 1),
             "peak_bytes_per_clip_while_reading": round(peak / n, 1), "mean_path_chars_per_clip": round(path_chars, 1),
             "scale_clips": scale_clips, "per_process_mb": round(files_mb, 1), "workers": _copies(files_mb, 1)}
    del rows
    entries, retained, peak = _traced(lambda: read_shard_index(shard_url(cfg)))
    m = len(entries)
    per_shard = retained / m
    clips = sum(e.clips for e in entries)
    mean_clip = sum(e.bytes for e in entries) / clips
    shards_at_scale = math.ceil(scale_clips * mean_clip / shard_bytes_at_scale)
    shards_mb = per_shard * shards_at_scale / MB
    shards = {"shards_measured": m, "bytes_per_shard": round(per_shard, 1),
              "bytes_per_shard_getsizeof": round(_deep_size(entries) / m, 1),
              "peak_bytes_per_shard_while_reading": round(peak / m, 1), "mean_clip_bytes": round(mean_clip),
              "shard_bytes_at_scale": shard_bytes_at_scale, "shards_at_scale": shards_at_scale,
              "per_process_mb": round(shards_mb, 3), "workers": _copies(shards_mb, 3)}
    return {"files": files, "shards": shards,
            "ratio_files_to_shards": round(files_mb / shards_mb) if shards_mb else None}


# --- report -----------------------------------------------------------------------------------------------


def _print_table(result: dict) -> None:
    m, d, s = result["machine"], result["dataset"], result["shard"]
    print(f"\nmachine: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable)")
    print(f"dataset: {d['clips']} clips of {d['videos']} videos, mp4 {d['mean_mp4_kb']} KB/clip; "
          f"{s['shards']} shards ({s['train_shards']} train, {s['val_shards']} val), {s['mb']} MB")
    print(f"{'mode':>7} {'workers':>7} {'clips':>6} {'batches':>7} {'seconds':>8} {'clips/s':>8} {'steady':>8} "
          f"{'1st batch':>9} {'main RSS':>9}  worker peak RSS (USS) MB")
    for r in result["runs"]:
        workers = ", ".join(f"{a:.0f} ({b:.0f})"
                            for a, b in zip(r["peak_rss_mb_per_worker"], r["peak_uss_mb_per_worker"]))
        steady = f"{r['steady_clips_per_s']:.1f}" if r["steady_clips_per_s"] is not None else "-"
        print(f"{r['mode']:>7} {r['workers']:>7} {r['clips']:>6} {r['batches']:>7} {r['seconds']:>8.2f} "
              f"{r['clips_per_s']:>8.1f} {steady:>8} {r['first_batch_s']:>8.2f}s {r['peak_rss_mb_main']:>6.0f} MB  "
              f"{workers}")
    f, sh = result["index_memory"]["files"], result["index_memory"]["shards"]
    print(f"index at {f['scale_clips']:,} clips: files {f['bytes_per_clip']:.0f} B/clip -> "
          f"{f['per_process_mb']:,.0f} MB per process ({f['workers']['2']['workers_copies_mb']:,.0f} MB in 2 workers, "
          f"{f['workers']['2']['with_main_mb']:,.0f} MB with the main process); shards "
          f"{sh['bytes_per_shard']:.0f} B/shard x {sh['shards_at_scale']:,} shards -> {sh['per_process_mb']:.2f} MB "
          "per process")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=300, help="synthetic clips")
    parser.add_argument("--videos", type=int, default=60, help="source videos they come from")
    parser.add_argument("--shard-mb", type=float, default=4.0, help="shard.max_bytes in MB (several shards)")
    parser.add_argument("--scale-clips", type=int, default=2_200_000, help="clips to extrapolate the index memory to")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--workers", type=int, nargs="+", default=list(WORKERS), help="DataLoader workers")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("artifacts/benchmarks/dataloader.json"))
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (its path is printed)")
    args = parser.parse_args()
    if args.videos < 2 or args.clips < args.videos:
        parser.error("need --videos >= 2 and --clips >= --videos")

    from vmas.config import load_config
    from vmas.io import atomic_write_json

    shard_bytes_at_scale = load_config(SCALE_CONFIG).shard.max_bytes  # the paper's 500 MB shards
    work = Path(tempfile.mkdtemp(prefix="vmas-dataloader-"))
    try:
        overrides = [f"paths.artifacts_dir={work / 'artifacts'}", f"paths.data_dir={work / 'data'}",
                     f"train.val_share={VAL_SHARE}", f"train.batch_size={BATCH}",
                     f"shard.max_bytes={int(args.shard_mb * MB)}"]
        cfg = load_config(CONFIG, overrides=overrides)
        print(f"building {args.clips} clips in {work} ...", file=sys.stderr, flush=True)
        dataset = build_token_set(cfg, args.clips, args.videos, args.seed)
        print("sharding ...", file=sys.stderr, flush=True)
        shards = run_shard(cfg)
        runs = []
        for mode in args.modes:
            for workers in args.workers:
                print(f"loading: {mode}, {workers} worker(s) ...", file=sys.stderr, flush=True)
                runs.append(run_loader(cfg, mode, workers))
        memory = index_memory(cfg, args.scale_clips, shard_bytes_at_scale)
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    result = {"benchmark": "dataloader", "machine": _machine(),
              "settings": {"config": str(CONFIG.relative_to(REPO)), "clips": args.clips, "videos": args.videos,
                           "batch_size": BATCH, "val_share": VAL_SHARE, "shard_max_bytes": int(args.shard_mb * MB),
                           "shuffle_buffer": cfg.train.shuffle_buffer, "frames": cfg.video.frames,
                           "size": cfg.video.size, "fps": cfg.video.fps, "seed": args.seed,
                           "scale_clips": args.scale_clips, "scale_shard_bytes": shard_bytes_at_scale,
                           "scale_shard_bytes_from": f"{SCALE_CONFIG.relative_to(REPO)} shard.max_bytes",
                           "sample_every_s": SAMPLE_S},
              "dataset": dataset, "shard": shards, "runs": runs, "index_memory": memory}
    atomic_write_json(args.out, result)  # a temporary file beside it, then os.replace
    _print_table(result)
    print(f"\nwritten {args.out}")


if __name__ == "__main__":
    main()
