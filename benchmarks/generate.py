"""Benchmark music generation: ms per decoding step and the real-time factor, for each profile, with
vmas's fast decoder and with audiocraft's own streaming ``LMModel`` loop, same model, batch and settings.

The audiocraft column runs the loop ``LMModel.generate`` runs (``LMModel.streaming()`` and
``_sample_next_token``'s batched classifier-free guidance; see ``vmas.models.sample``) with
the video condition as tensors, since ``LMModel.generate`` itself only takes text attributes. The
fast column is :class:`vmas.models.fast_decoder.FastDecoder` (cross-attention keys and values
once per video, a preallocated self-attention cache); on a GPU the static column is the same with
fixed-shape steps replayed as a CUDA graph (what ``vmas generate`` uses there). Both sample the same tokens for a seed (a
unit test checks it), so only the speed differs. A step is one position of the delayed sequence
(``steps + n_q - 1`` of them); ms per step counts the decoding only (the video encoder runs once
per video and is reported apart). Real-time factor = seconds of music per second of the whole
generation, per sequence.
Weights are random: speed does not depend on them. Writes JSON.

    python benchmarks/generate.py --out artifacts/benchmarks/generate.json                  # demo + paper sizes, CPU
    python benchmarks/generate.py --profiles paper --batch 2 --steps 500 --precision bf16   # a GPU
"""

from __future__ import annotations

import argparse
import platform
import resource
import time
from pathlib import Path

import torch

from vmas.config import load_config
from vmas.io import atomic_write_json
from vmas.models.builders import build_vmas
from vmas.models.sample import SamplingSettings, generate_codes


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def encoder_seconds(model, frames, device: str, repeats: int) -> float:
    """Best wall time of the video encoder and projection alone (once per video, not per step)."""
    best = float("inf")
    with torch.no_grad():
        for _ in range(repeats):
            _sync(device)
            start = time.perf_counter()
            model.condition(model.video_encoder(frames))
            _sync(device)
            best = min(best, time.perf_counter() - start)
    return best


def measure(model, frames, steps: int, decoder: str, device: str, repeats: int) -> float:
    """Best wall time of ``repeats`` generations of ``steps`` codes (after one short warm-up)."""
    settings = SamplingSettings(guidance=3.0, temperature=1.0, top_k=250)
    generate_codes(model, frames, 4, settings, torch.Generator(device).manual_seed(0), decoder=decoder)
    best = float("inf")
    for r in range(repeats):
        _sync(device)
        start = time.perf_counter()
        generate_codes(model, frames, steps, settings, torch.Generator(device).manual_seed(r), decoder=decoder)
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", default="demo,paper", help="comma-separated profiles (paper = MusicGen-medium size)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=None, help="codes per sequence (default: 100 demo, 20 paper on CPU)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default=None, help="default: bf16 on GPU")
    parser.add_argument("--out", type=Path, default=Path("artifacts/benchmarks/generate.json"))
    args = parser.parse_args()
    precision = args.precision or ("bf16" if args.device.startswith("cuda") else "fp32")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32

    results = []
    for profile in args.profiles.split(","):
        cfg = load_config(profile=profile)
        steps = args.steps or (100 if profile == "demo" or args.device.startswith("cuda") else 20)
        torch.manual_seed(0)
        with torch.device(args.device):
            model = build_vmas(cfg, torch.randn(cfg.codec.n_q, cfg.codec.cardinality, cfg.codec.dimension),
                               load_pretrained=False)
        model = model.to(dtype).eval()
        frames = torch.randn(args.batch, 3, cfg.video.frames, cfg.video.size, cfg.video.size, device=args.device,
                             dtype=dtype)
        sequence_steps = steps + cfg.codec.n_q - 1
        row = {"profile": profile, "decoder_parameters": sum(p.numel() for p in model.music_decoder.parameters()),
               "layers": cfg.model.music_decoder.num_layers, "dim": cfg.model.music_decoder.dim, "batch": args.batch,
               "codes_per_sequence": steps, "sequence_steps": sequence_steps, "precision": precision}
        decoders = ("fast", "static", "audiocraft") if args.device.startswith("cuda") else ("fast", "audiocraft")
        row["video_encoder_seconds"] = round(encoder_seconds(model, frames, args.device, args.repeats), 4)
        for decoder in decoders:
            seconds = measure(model, frames, steps, decoder, args.device, args.repeats)
            decoding = max(seconds - row["video_encoder_seconds"], 1e-9)  # per step: the decoding alone
            row[decoder] = {"seconds": round(seconds, 4), "ms_per_step": round(1000 * decoding / sequence_steps, 3),
                            "real_time_factor": round(steps / cfg.codec.frame_rate / seconds, 3)}
            print(f"{profile:6s} {decoder:10s} {row[decoder]['ms_per_step']:9.2f} ms/step  "
                  f"RTF {row[decoder]['real_time_factor']:.2f}", flush=True)
        row["speedup"] = round(row["audiocraft"]["seconds"] / row["fast"]["seconds"], 2)
        results.append(row)
        del model
    report = {"benchmark": "generate", "device": args.device,
              "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor(),
              "torch": torch.__version__, "threads": torch.get_num_threads(),
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "results": results}
    atomic_write_json(args.out, report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
