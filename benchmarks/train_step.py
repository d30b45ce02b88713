"""Benchmark one VMAs training step: tokens/s, peak memory, and (on a GPU) model FLOPs utilisation.

Runs forward + backward + AdamW on synthetic batches (codes, beat weights, frames) of the given
profile's shapes, so it measures the model, not the data pipeline. FLOPs per step are counted
once with ``torch.utils.flop_counter`` (forward and backward); MFU = achieved FLOP/s over the
device's dense peak (``--peak-tflops``; H100 SXM bf16: 989). Also reports the video encoder's
forward FLOPs per clip (the paper's 130.7 GFLOPs for 96 frames of 224 px). Writes JSON.

    python benchmarks/train_step.py --profile demo --out artifacts/benchmarks/train_step.json
    python benchmarks/train_step.py --profile paper --batch 8 --seconds 10 --precision bf16   # a GPU
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from vmas.config import load_config
from vmas.models.builders import build_vmas
from vmas.training.module import LossSettings, VMAsTraining
from vmas.io import atomic_write_json


def batch_for(cfg, batch: int, device: str) -> dict:
    steps = int(cfg.clip.seconds * cfg.codec.frame_rate)
    return {"codes": torch.randint(0, cfg.codec.cardinality, (batch, cfg.codec.n_q, steps), device=device),
            "beat_weights": torch.rand(batch, steps, device=device),
            "frames": torch.randn(batch, 3, cfg.video.frames, cfg.video.size, cfg.video.size, device=device)}


def video_encoder_flops(cfg) -> int:
    """Forward FLOPs of the video encoder for one clip (counted on the meta device: no memory, no time)."""
    from vmas.models.builders import video_encoder_spec
    from vmas.models.video_encoder import VideoEncoder

    with torch.device("meta"):
        encoder = VideoEncoder(video_encoder_spec(cfg))
        with FlopCounterMode(display=False) as counter:
            encoder(torch.empty(1, 3, cfg.video.frames, cfg.video.size, cfg.video.size))
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--batch", type=int, default=None, help="default: train.batch_size")
    parser.add_argument("--seconds", type=float, default=None, help="clip length (default: clip.seconds)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default=None, help="default: bf16 on GPU")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense peak of the device (for MFU)")
    parser.add_argument("--set", action="append", default=[], help="config override a.b=c")
    parser.add_argument("--out", type=Path, default=Path("artifacts/benchmarks/train_step.json"))
    args = parser.parse_args()

    overrides = list(args.set)
    if args.seconds:
        cfg0 = load_config(profile=args.profile)
        frames = int(round(args.seconds * cfg0.video.fps))
        overrides += [f"clip.seconds={args.seconds}", f"video.frames={frames}"]
    cfg = load_config(profile=args.profile, overrides=overrides)
    batch = args.batch or cfg.train.batch_size
    precision = args.precision or ("bf16" if args.device == "cuda" else "fp32")
    torch.manual_seed(0)
    codebooks = torch.randn(cfg.codec.n_q, cfg.codec.cardinality, cfg.codec.dimension)
    module = VMAsTraining(build_vmas(cfg, codebooks, load_pretrained=False),
                          LossSettings(cfg.train.beat_weighting, cfg.train.contrastive_weight, cfg.model.temperature))
    model = module.model.to(args.device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    data = batch_for(cfg, batch, args.device)
    keep = torch.ones(batch, dtype=torch.bool, device=args.device)
    autocast = torch.autocast(args.device, dtype=torch.bfloat16, enabled=precision == "bf16")

    def step() -> None:
        with autocast:
            loss = module.losses(data, keep)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def sync() -> None:
        if args.device == "cuda":
            torch.cuda.synchronize()

    with FlopCounterMode(display=False) as counter:
        step()  # also the warm-up
    flops = counter.get_total_flops()
    sync()
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    seconds = (time.perf_counter() - started) / args.steps
    tokens = batch * cfg.codec.n_q * int(cfg.clip.seconds * cfg.codec.frame_rate)
    result = {"benchmark": "train_step", "profile": args.profile, "device": args.device,
              "device_name": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
              "precision": precision, "batch": batch, "clip_seconds": cfg.clip.seconds, "frames": cfg.video.frames,
              "parameters": sum(p.numel() for p in model.parameters()),
              "decoder_parameters": sum(p.numel() for p in model.music_decoder.parameters()),
              "seconds_per_step": round(seconds, 4), "tokens_per_step": tokens,
              "tokens_per_s": round(tokens / seconds, 1), "codec_frames_per_s": round(tokens / cfg.codec.n_q / seconds, 1),
              "flops_per_step": flops, "achieved_tflops": round(flops / seconds / 1e12, 3),
              # torch counts 2 FLOPs per multiply-add; the paper reports 130.7 GFLOPs for 96 frames
              "video_encoder_gflops_per_clip": round(video_encoder_flops(cfg) / 1e9, 2),
              "torch_threads": torch.get_num_threads()}
    if args.device == "cuda":
        result["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        result["mfu"] = round(flops / seconds / (args.peak_tflops * 1e12), 4)
    else:
        result["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    atomic_write_json(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
