"""Ship a codec trained by `vmas train_codec` as the package's demo codec (``codec.pretrained: vmas:demo``).

The demo codec was trained once, longer than `make demo` could afford, on a synthetic set the demo does not use:

    vmas synth --out runs/set1/data --n 48 --seed 1
    vmas ingest runs/set1/data ... ; vmas probe/filter_static/remove_vocals/clip ...   (--set paths.* to runs/set1)
    vmas train_codec --set codec.pretrained=null --set codec.train.max_steps=2000 --set paths.artifacts_dir=runs/set1/artifacts

Then this script copies its ``compression_state_dict.bin`` (audiocraft's export format) into
``src/vmas/codec/weights/<name>/`` with a ``report.json`` that keeps the provenance: the training report of
`vmas train_codec` (settings, held-out figures, the loss curve thinned to every 10th step), the file's sha256,
and the codec measured on the clips of a second set (``--demo-clips``: a clip manifest, e.g. the demo's own
``artifacts/manifests/clip``), which the end-to-end tests use as the reference for their floors:

    python scripts/ship_demo_codec.py runs/set1/artifacts/train_codec --demo-clips artifacts/manifests/clip
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from vmas.codec import load_codec
from vmas.codec.train_codec import evaluate_codec
from vmas.config import BUNDLED_CODECS
from vmas.io import atomic_write_json
from vmas.io import file_sha256
from vmas.manifest import Manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trained", type=Path, help="the train_codec output folder (compression_state_dict.bin, report.json)")
    parser.add_argument("--demo-clips", type=Path, required=True, help="a clip manifest to measure the codec on")
    parser.add_argument("--name", default="demo")
    parser.add_argument("--every", type=int, default=1, help="measure every n-th clip of --demo-clips")
    args = parser.parse_args(argv)

    codec_file = args.trained / "compression_state_dict.bin"
    report = json.loads((args.trained / "report.json").read_text())
    if not codec_file.is_file() or not report.get("gate", {}).get("passed"):
        print(f"{args.trained}: no published codec that passed its gate", file=sys.stderr)
        return 1
    clips = [r for r in Manifest(args.demo_clips).iter_rows(["id", "audio_path", "error"]) if r["error"] is None]
    measured = evaluate_codec(load_codec(codec_file), clips[:: args.every], report["gate"]["onset_tolerance_s"])
    target = BUNDLED_CODECS / args.name
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(codec_file, target / "compression_state_dict.bin")
    history = report.pop("history", [])
    atomic_write_json(target / "report.json", {
        "name": args.name, "sha256": file_sha256(target / "compression_state_dict.bin"),
        "trained_with": "vmas train_codec", "training": {**report, "history": history[::10]},
        "demo_set": {k: v for k, v in measured.items() if k != "clips"} | {"clips": len(measured["clips"])}})
    print(json.dumps({"shipped": str(target), "held_out": report["metrics"], "demo_set": measured | {"clips": len(clips[:: args.every])}},
                     indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
