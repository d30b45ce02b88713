"""Benchmark `vmas synth`: seconds of video rendered per second of wall time on one core.

Renders the demo profile's first N items with one worker into a scratch folder, then measures the
set from its files (static share, vocal share, onset/motion coincidence). Writes JSON.

    python benchmarks/synth.py --n 16 --out artifacts/benchmarks/synth.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from vmas.config import load_config
from vmas.synth import synthesize_dataset
from vmas.synth.verify import measure_set
from vmas.io import atomic_write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--out", type=Path, default=Path("artifacts/benchmarks/synth.json"))
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the requirement is stated
    cfg = load_config(profile=args.profile, overrides=[f"synth.n={args.n}"])
    with tempfile.TemporaryDirectory() as scratch:
        report = synthesize_dataset(cfg.synth, scratch, workers=1, progress=False)
        started = time.perf_counter()
        summary, _ = measure_set(scratch)
        measure_s = time.perf_counter() - started
        size = sum(p.stat().st_size for p in Path(scratch).iterdir())
    result = {
        "benchmark": "synth",
        "profile": args.profile,
        "items": args.n,
        "workers": 1,
        "video_seconds": round(report.video_seconds, 2),
        "wall_seconds": round(report.wall_seconds, 2),
        "x_realtime_one_core": round(report.realtime_factor, 2),
        "bytes_written": size,
        "measured": asdict(summary),
        "measure_seconds": round(measure_s, 2),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "python": platform.python_version()},
    }
    atomic_write_json(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
