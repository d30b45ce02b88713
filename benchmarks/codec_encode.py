"""Benchmark EnCodec encode/decode speed: seconds of audio per second, at the released 32 kHz size.

Speed depends on the architecture, not the weights, so a randomly initialised model of the
MusicGen codec's shape (SEANet 64 filters, 128-d, 4 x 2048 RVQ, 50 Hz) stands in for the real one.
CPU always; CUDA too when there is a GPU. Writes JSON.

    python benchmarks/codec_encode.py --out artifacts/benchmarks/codec_encode.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from vmas.codec import Codec, build_encodec, encodec_xp_config
from vmas.io import atomic_write_json


def measure(codec: Codec, device: str, seconds: float, batch: int, repeats: int) -> dict:
    wav = 0.1 * torch.randn(batch, 1, int(seconds * codec.sample_rate), device=device)
    codec.encode(wav)  # warm-up
    timings = {}
    for name, fn in (("encode", lambda: codec.encode(wav)), ("decode", lambda: codec.decode(codes))):
        codes = codec.encode(wav)
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(repeats):
            fn()
        if device == "cuda":
            torch.cuda.synchronize()
        elapsed = (time.perf_counter() - started) / repeats
        timings[f"{name}_audio_s_per_s"] = round(batch * seconds / elapsed, 2)
    return {"device": device, "batch": batch, "clip_seconds": seconds, **timings}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("artifacts/benchmarks/codec_encode.json"))
    args = parser.parse_args()
    torch.manual_seed(0)
    results = []
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        codec = Codec(build_encodec(encodec_xp_config()).to(device))
        results.append(measure(codec, device, args.seconds, args.batch, args.repeats))
    out = {"benchmark": "codec_encode", "model": "EnCodec 32 kHz shape (random weights)",
           "torch_threads": torch.get_num_threads(), "results": results}
    atomic_write_json(args.out, out)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
