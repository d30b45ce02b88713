"""Benchmark the tokenize stage: seconds of clip audio turned into codes per second, end to end.

Runs the real stage (read WAV, encode, write ``.npz``, write the manifest) over ``--clips``
synthetic 4 s clips, for the demo codec's size and the released 32 kHz size. Speed depends on
the architecture, not the weights, so randomly initialised codecs saved in audiocraft's format
(given as ``codec.pretrained``) stand in. CPU with 1 and 2 worker processes; CUDA too when there
is a GPU (one process). Writes JSON. (Not named ``tokenize.py``: a script folder's ``tokenize.py``
shadows the standard library module of that name for every script run from it.)

    python benchmarks/tokenize_stage.py --out artifacts/benchmarks/tokenize.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from vmas.codec import build_encodec, encodec_xp_config, save_codec
from vmas.config import load_config
from vmas.curation import STAGES
from vmas.curation.runner import run_stage
from vmas.io import atomic_write_json
from vmas.layout import manifest_dir
from vmas.manifest import Manifest

REPO = Path(__file__).resolve().parents[1]
SIZES = {"demo": {"n_filters": 8, "dimension": 64, "lstm": 1}, "released": {"n_filters": 64, "dimension": 128, "lstm": 2}}


def write_clips(root: Path, cfg, n: int) -> None:
    rng = np.random.default_rng(0)
    seconds, sr = cfg.clip.seconds, cfg.audio.sample_rate
    steps = int(seconds * cfg.codec.frame_rate)
    rows = []
    for i in range(n):
        path = root / f"clip{i}.wav"
        sf.write(path, (0.1 * rng.standard_normal(int(seconds * sr))).astype(np.float32), sr)
        rows.append({"id": f"v{i}/0000", "input_id": f"v{i}", "key": "k", "error": None, "video_id": f"v{i}",
                     "audio_path": str(path), "video_path": str(root / f"clip{i}.mp4"), "token_rate": 50,
                     "beat_weights": [0.5] * steps})
    Manifest(manifest_dir(cfg, "beats"), STAGES["beats"].schema).append(rows)


def run(size: str, device: str, workers: int, clips: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        xp = encodec_xp_config(**SIZES[size])
        torch.manual_seed(0)
        save_codec(build_encodec(xp).eval(), xp, root / "codec.bin")
        cfg = load_config(REPO / "configs" / "demo.yaml", overrides=[
            f"paths.artifacts_dir={root / 'artifacts'}", f"codec.pretrained={root / 'codec.bin'}",
            f"codec.device={device}"])
        write_clips(root, cfg, clips)
        started = time.perf_counter()
        report = run_stage("tokenize", cfg, workers=workers, progress=False)
        elapsed = time.perf_counter() - started
        assert report.errors == 0 and report.processed == clips, report
        audio_s = clips * cfg.clip.seconds
        return {"codec": size, "device": device, "workers": workers, "clips": clips, "audio_seconds": audio_s,
                "wall_seconds": round(elapsed, 2), "audio_s_per_s": round(audio_s / elapsed, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--out", type=Path, default=Path("artifacts/benchmarks/tokenize.json"))
    args = parser.parse_args()
    results = [run(size, "cpu", workers, args.clips) for size in SIZES for workers in (1, 2)]
    if torch.cuda.is_available():
        results += [run(size, "cuda", 1, args.clips) for size in SIZES]
    out = {"benchmark": "tokenize", "cpu_count": os.cpu_count(),
           "torch_threads": torch.get_num_threads(), "results": results}
    atomic_write_json(args.out, out)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
