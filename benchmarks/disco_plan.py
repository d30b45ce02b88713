"""From DISCO-10M to DISCO-MV on a cluster: node-hours, node counts and wall time, from measured throughputs.

Reads what the benchmarks measured on this machine (one CPU core per stage):
``benchmarks/curation.py`` (seconds per video or clip of every row stage, on the demo's short videos)
and ``benchmarks/ingest_disco.py`` (metadata rows per second, yt-dlp's cost per file), and scales
them to DISCO-10M: 15.3 M rows, music videos of ``--video-minutes``, the paper's clip length. Two
GPU stages cannot be measured here (no GPU): Demucs (``remove_vocals``) and the codec's encoder
(``tokenize``) are given as multiples of real time (``--demucs-x-realtime``, ``--tokenize-x-realtime``),
stated as assumptions in the output. So are the shares of rows that survive each filter, set so
that the paper's 2.2 M videos come out. Writes JSON and prints the plan.

    python benchmarks/disco_plan.py --curation artifacts/benchmarks/curation.json \\
        --ingest artifacts/benchmarks/ingest_disco.json --out artifacts/benchmarks/disco_plan.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROWS = 15_300_000  # DISCO-10M's rows (YouTube videos with a matched Spotify track)
DISCO_MV = 2_200_000  # what the paper trains on, after filtering


def _core_s(curation: dict, clip_s: float, hop_s: float, video_s: float, demo_clip_s: float) -> dict[str, tuple]:
    """CPU core-seconds of each CPU stage, scaled from the demo's measurements: ``(seconds, per)`` with
    ``per`` "video" (a downloaded DISCO video of ``video_s``) or "hour" (an hour of kept video)."""
    stages = {s["stage"]: s for s in curation["stages"]}
    videos = stages["probe"]["rows"]
    demo_s = stages["probe"]["summary"]["mean_duration_s"]
    frames = min(32, video_s) / min(32, demo_s)  # filter_static samples 1 frame a second, at most 32
    # clip's rows are videos (it cuts every clip of one): its cost follows the seconds of video
    clip_per_s = stages["clip"]["seconds"] / (max(stages["clip"]["rows"], 1) * demo_s)
    # beats' rows are clips, each costing in proportion to its length; an hour holds 3600 / hop clips
    beats_per_clip = stages["beats"]["seconds"] / max(stages["beats"]["rows"], 1) * clip_s / demo_clip_s
    return {"probe": (stages["probe"]["seconds"] / videos, "video"),
            "filter_static": (stages["filter_static"]["seconds"] / max(stages["filter_static"]["rows"], 1) * frames,
                              "video"),
            "clip": (clip_per_s * 3600, "hour"),
            "beats": (beats_per_clip * 3600 / hop_s, "hour")}


def plan(args) -> dict:
    curation = json.loads(Path(args.curation).read_text())
    ingest = json.loads(Path(args.ingest).read_text())
    video_s = args.video_minutes * 60
    costs = _core_s(curation, args.clip_seconds, args.hop_seconds, video_s, args.demo_clip_seconds)
    biggest = max(x["rows"] for x in ingest["ingest"])
    ingest_rate = next(r["rows_per_second"] for r in ingest["ingest"] if r["rows"] == biggest)
    ytdlp = ingest.get("download", {}).get("ytdlp") or {}
    # yt-dlp's own CPU per file, measured against the local server (2 cores busy): an upper bound
    costs["download"] = ((2 * ytdlp["seconds"] / ytdlp["files"]) if ytdlp.get("files") else 1.0, "video")

    downloaded = ROWS * args.kept_by_duration * args.available
    rows = []
    for stage in ("download", "probe", "filter_static", "clip", "beats"):
        seconds, per = costs[stage]
        amount = downloaded if per == "video" else args.kept_hours
        core_h = amount * seconds / 3600
        rows.append({"stage": stage, "pool": "cpu", "input": f"{amount:,.0f} {per}s", "core_s_per_" + per:
                     round(seconds, 3), "core_hours": round(core_h), "node_hours": round(core_h / args.cores_per_node, 1)})
    for stage, speed in (("remove_vocals", args.demucs_x_realtime), ("tokenize", args.tokenize_x_realtime)):
        hours = args.kept_hours / speed
        rows.append({"stage": stage, "pool": "gpu", "input": f"{args.kept_hours:,.0f} hours", "gpu_hours": round(hours),
                     "node_hours": round(hours / args.gpus_per_node, 1)})
    cpu_node_h = sum(r["node_hours"] for r in rows if r["pool"] == "cpu")
    gpu_node_h = sum(r["node_hours"] for r in rows if r["pool"] == "gpu")
    download_rate = args.cpu_nodes * args.download_pods_per_node * args.per_host_per_s
    walls = {"ingest (one core)": ROWS / ingest_rate / 3600,
             "download (rate limit)": downloaded / download_rate / 3600,
             "download (bandwidth)": downloaded * args.mb_per_video * 8 / (args.cpu_nodes * args.gbps_per_node * 1000)
             / 3600,
             "cpu stages": cpu_node_h / args.cpu_nodes,
             "gpu stages": gpu_node_h / args.gpu_nodes}
    return {
        "inputs": {"curation": str(args.curation), "ingest": str(args.ingest), "machine": ingest.get("machine")},
        "assumptions": {"rows": ROWS, "disco_mv_videos": DISCO_MV, "kept_hours": args.kept_hours,
                        "video_minutes": args.video_minutes, "clip_seconds": args.clip_seconds,
                        "hop_seconds": args.hop_seconds, "kept_by_duration": args.kept_by_duration,
                        "available_on_youtube": args.available, "demucs_x_realtime_per_gpu": args.demucs_x_realtime,
                        "tokenize_x_realtime_per_gpu": args.tokenize_x_realtime, "mb_per_video": args.mb_per_video},
        "cluster": {"cpu_nodes": args.cpu_nodes, "cores_per_node": args.cores_per_node, "gpu_nodes": args.gpu_nodes,
                    "gpus_per_node": args.gpus_per_node, "download_pods_per_node": args.download_pods_per_node,
                    "per_host_per_s": args.per_host_per_s, "gbps_per_node": args.gbps_per_node},
        "ingest_rows_per_second": ingest_rate,
        "downloaded_videos": round(downloaded),
        "stages": rows,
        "downloaded_tb": round(downloaded * args.mb_per_video / 1e6, 1),
        "cpu_node_hours": round(cpu_node_h), "gpu_node_hours": round(gpu_node_h),
        "wall_hours": {k: round(v, 2) for k, v in walls.items()},
        # batches flow through the stages, so the pools overlap: the slowest one sets the pace
        "wall_hours_pipelined": round(max(walls.values()), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--curation", type=Path, default=Path("artifacts/benchmarks/curation.json"))
    parser.add_argument("--ingest", type=Path, default=Path("artifacts/benchmarks/ingest_disco.json"))
    parser.add_argument("--out", type=Path, default=Path("artifacts/benchmarks/disco_plan.json"))
    parser.add_argument("--video-minutes", type=float, default=4.0, help="mean length of a downloaded video")
    parser.add_argument("--kept-hours", type=float, default=47_000, help="the paper's DISCO-MV: 2.2 M videos, 47k h")
    parser.add_argument("--clip-seconds", type=float, default=10.0, help="training clip length at scale")
    parser.add_argument("--hop-seconds", type=float, default=10.0)
    parser.add_argument("--demo-clip-seconds", type=float, default=4.0, help="the demo profile's clip.seconds")
    parser.add_argument("--kept-by-duration", type=float, default=0.85, help="assumed share within the limits")
    parser.add_argument("--available", type=float, default=0.75, help="assumed share still on YouTube")
    parser.add_argument("--demucs-x-realtime", type=float, default=30.0, help="assumed htdemucs speed on one GPU")
    parser.add_argument("--tokenize-x-realtime", type=float, default=500.0, help="assumed EnCodec encoder speed")
    parser.add_argument("--mb-per-video", type=float, default=40.0, help="assumed size of a <=720p download")
    parser.add_argument("--cpu-nodes", type=int, default=32)
    parser.add_argument("--cores-per-node", type=int, default=32)
    parser.add_argument("--gpu-nodes", type=int, default=16)
    parser.add_argument("--gpus-per-node", type=int, default=1)
    parser.add_argument("--download-pods-per-node", type=int, default=1)
    parser.add_argument("--per-host-per-s", type=float, default=2.0, help="download.per_host_per_s of each pod")
    parser.add_argument("--gbps-per-node", type=float, default=1.0, help="assumed egress bandwidth per node")
    args = parser.parse_args()
    result = plan(args)
    for row in result["stages"]:
        cost = f"{row['core_hours']:>9,} core-h" if row["pool"] == "cpu" else f"{row['gpu_hours']:>9,} GPU-h "
        print(f"{row['stage']:14s} {row['input']:>22s} {cost} {row['node_hours']:>10,.1f} node-h")
    for name, hours in result["wall_hours"].items():
        print(f"wall {name:24s} {hours:8.2f} h")
    print(f"wall, pipelined (slowest pool) {result['wall_hours_pipelined']:.1f} h; downloads {result['downloaded_tb']} TB")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
