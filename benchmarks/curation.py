"""Benchmark the curation stages on the demo set: rows per second and peak memory, per stage.

Each stage runs in its own process (one worker) over a fresh artifacts folder, so its peak RSS is
its own. Needs the demo set in data/ (`make demo` or `vmas synth`). Writes JSON.

    python benchmarks/curation.py --out artifacts/benchmarks/curation.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _child(stage: str, artifacts: str, data: str) -> None:
    from vmas.config import load_config
    from vmas.curation.ingest import ingest
    from vmas.layout import manifest_dir
    from vmas.curation.runner import run_stage

    cfg = load_config(profile="demo", overrides=[f"paths.artifacts_dir={artifacts}", f"paths.data_dir={data}"])
    started = time.perf_counter()
    if stage == "ingest":
        counts = ingest(cfg, manifest_dir(cfg, "ingest"), [Path(data)], progress=False)
        rows, extra = counts["new"], {}
    else:
        report = run_stage(stage, cfg, workers=1, progress=False)
        rows, extra = report.processed, report.extra
        if stage == "probe":  # how long the videos are: the plan in benchmarks/disco_plan.py scales by it
            from vmas.curation import STAGES
            from vmas.manifest import Manifest

            durations = [r["duration_s"] for r in Manifest(manifest_dir(cfg, stage), STAGES[stage].schema)
                         .iter_rows(["duration_s", "error"]) if r["error"] is None]
            extra = {**extra, "mean_duration_s": round(sum(durations) / max(len(durations), 1), 2)}
    seconds = time.perf_counter() - started
    peak_kb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    print(json.dumps({"stage": stage, "rows": rows, "seconds": round(seconds, 2),
                      "rows_per_second": round(rows / seconds, 3) if seconds else None,
                      "peak_rss_mb": round(peak_kb / 1024, 1), "summary": extra}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data")
    parser.add_argument("--out", type=Path, default=Path("artifacts/benchmarks/curation.json"))
    parser.add_argument("--child", nargs=2, metavar=("STAGE", "ARTIFACTS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return _child(*args.child, args.data)
    from vmas.curation import STAGES

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    results = []
    with tempfile.TemporaryDirectory() as artifacts:
        for stage in [n for n, s in STAGES.items() if s.row_wise or n == "ingest"]:  # train_codec: codec_encode.py
            out = subprocess.run([sys.executable, __file__, "--data", args.data, "--child", stage, artifacts],
                                 check=True, capture_output=True, text=True).stdout
            results.append(json.loads(out.strip().splitlines()[-1]))
            print(f"{stage:14s} {results[-1]['rows']:4d} rows  {results[-1]['rows_per_second']:8.2f} rows/s  "
                  f"peak RSS {results[-1]['peak_rss_mb']:7.1f} MB", file=sys.stderr)
    videos = next(r["rows"] for r in results if r["stage"] == "probe")
    result = {"benchmark": "curation", "profile": "demo", "videos": videos, "workers": 1, "stages": results,
              "note": "rows are videos for ingest/probe/filter_static/remove_vocals, clips for clip-level stages"}
    from vmas.io import atomic_write_json

    atomic_write_json(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
