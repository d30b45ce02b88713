"""Render the embedded synthetic music-video set to a folder.

For each item ``ID`` the folder gets::

    ID.mp4                H.264 + AAC: the picture and the mix (instrumental + vocals)
    ID.instrumental.wav   the instrumental stem (16-bit PCM, the mp4's sample rate, mono)
    ID.vocals.wav         the vocal stem (silence for items without vocals)
    ID.truth.json         ground truth: tempo, beats, onsets, motion peaks, cuts, genre, ...

and the folder gets ``synth.json``, an index of the set. ``ID.truth.json`` is written last and
carries the item's fingerprint: an item whose sidecar matches its plan is complete and is skipped
when the command runs again, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vmas.config import SynthConfig
from vmas.io import atomic_write_json
from vmas.media import write_mp4, write_wav
from vmas.media.stems import INSTRUMENTAL_SUFFIX, VOCALS_SUFFIX
from vmas.processes import worker_pool
from vmas.synth.music import compose, render_music
from vmas.synth.plan import STYLES, ItemPlan, plan_item
from vmas.synth.video import render_frames, slide_times
from vmas.synth.vocals import compose_vocal_line, render_vocals

log = logging.getLogger(__name__)

INDEX_FILE = "synth.json"
PEAK = 0.89  # the mix's peak after scaling, about -1 dBFS


@dataclass(frozen=True)
class ItemFiles:
    video: Path
    instrumental: Path
    vocals: Path
    truth: Path

    @classmethod
    def of(cls, out_dir: Path, item_id: str) -> "ItemFiles":
        return cls(*(out_dir / f"{item_id}{ext}" for ext in (".mp4", INSTRUMENTAL_SUFFIX, VOCALS_SUFFIX, ".truth.json")))


def is_complete(plan: ItemPlan, files: ItemFiles) -> bool:
    if not all(p.is_file() for p in asdict(files).values()):
        return False
    try:
        return json.loads(files.truth.read_text()).get("fingerprint") == plan.fingerprint()
    except (OSError, json.JSONDecodeError):
        return False


def render_item(plan: ItemPlan, out_dir: Path) -> dict:
    """Render one item's files (each written atomically, sidecar last); returns its ground truth."""
    started = time.perf_counter()
    files = ItemFiles.of(out_dir, plan.item_id)
    style = STYLES[plan.genre]
    score = compose(plan)
    music = render_music(plan, score)
    notes = compose_vocal_line(plan, score) if plan.has_vocals else []
    vocals = render_vocals(plan, notes)
    vocal_gain_db = float(plan.rng("mix").uniform(-3.0, 3.0)) if plan.has_vocals else None
    if plan.has_vocals:
        vocals *= 10 ** (vocal_gain_db / 20) * _rms(music) / max(_rms(vocals), 1e-9)
    scale = PEAK / max(float(np.abs(music + vocals).max()), 1e-9)
    music, vocals = music * scale, vocals * scale
    write_wav(files.instrumental, music, plan.sample_rate)
    write_wav(files.vocals, vocals, plan.sample_rate)
    mix = music + vocals  # the mp4's audio is exactly the sum of the stems (before AAC)

    dynamic = plan.visual == "dynamic"
    peaks = score.beats if dynamic else np.zeros(0)
    cuts = score.downbeats[style.cut_every_bars :: style.cut_every_bars] if dynamic else np.zeros(0)
    write_mp4(files.video, render_frames(plan, peaks, cuts), plan.fps, np.stack([mix, mix]), plan.sample_rate)

    truth = {
        "item_id": plan.item_id,
        "fingerprint": plan.fingerprint(),
        "plan": asdict(plan),
        "files": {k: p.name for k, p in asdict(files).items()},
        "tempo_bpm": plan.tempo_bpm,
        "beat_times": _rounded(score.beats),
        "downbeat_times": _rounded(score.downbeats),
        "onset_times": _rounded(score.onset_times()),
        "motion_peak_times": _rounded(peaks),
        "scene_cut_times": _rounded(cuts),
        "slide_times": _rounded(slide_times(plan)),
        "should_be_filtered": not dynamic,
        "vocals": {
            "present": plan.has_vocals,
            "gain_db_vs_instrumental": vocal_gain_db,
            "notes": [{"start": round(s, 4), "length": round(length, 4), "midi": m, "vowel": v} for s, length, m, v in notes],
        },
    }
    atomic_write_json(files.truth, truth)  # no timings inside: the same seed gives the same bytes
    log.debug("rendered %s", plan.item_id, extra={"fields": {
        "genre": plan.genre, "visual": plan.visual, "vocals": plan.has_vocals, "duration_s": plan.duration_s,
        "seconds": round(time.perf_counter() - started, 3)}})
    return truth


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2))) if x.size else 0.0


def _rounded(times: np.ndarray) -> list[float]:
    return [round(float(t), 4) for t in times]


def _render_indexed(job: tuple[ItemPlan, Path]) -> dict:
    return render_item(*job)


@dataclass
class SynthReport:
    out_dir: Path
    rendered: int
    skipped: int
    video_seconds: float  # seconds of video rendered in this run
    wall_seconds: float

    @property
    def realtime_factor(self) -> float:
        return self.video_seconds / self.wall_seconds if self.wall_seconds else float("inf")


def synthesize_dataset(cfg: SynthConfig, out_dir: str | Path, workers: int = 1, progress: bool = True) -> SynthReport:
    """Render items ``0 .. cfg.n - 1`` of seed ``cfg.seed`` into ``out_dir``, skipping complete ones."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    plans = [plan_item(cfg, i) for i in range(cfg.n)]
    todo = [p for p in plans if not is_complete(p, ItemFiles.of(out_dir, p.item_id))]
    log.info("synthesizing %d of %d items into %s", len(todo), len(plans), out_dir,
             extra={"fields": {"seed": cfg.seed, "skipped": len(plans) - len(todo), "workers": workers}})
    jobs = [(p, out_dir) for p in todo]
    bar = tqdm(total=len(todo), desc="synth", unit="video", disable=not progress)
    if workers > 1 and len(todo) > 1:
        with worker_pool(min(workers, len(todo))) as pool:  # workers die with this process
            for _ in pool.map(_render_indexed, jobs):
                bar.update()
    else:
        for job in jobs:
            _render_indexed(job)
            bar.update()
    bar.close()
    _write_index(cfg, out_dir, plans)
    report = SynthReport(out_dir, len(todo), len(plans) - len(todo), sum(p.duration_s for p in todo),
                         time.perf_counter() - started)
    log.info("synth done", extra={"fields": {"rendered": report.rendered, "skipped": report.skipped,
                                             "video_s": round(report.video_seconds, 1),
                                             "x_realtime": round(report.realtime_factor, 1)}})
    return report


def _write_index(cfg: SynthConfig, out_dir: Path, plans: list[ItemPlan]) -> None:
    listed = {p.item_id for p in plans}
    stale = sorted(p.name for p in out_dir.glob("synth-*.truth.json") if p.name.removesuffix(".truth.json") not in listed)
    if stale:
        log.warning("%d items from an earlier, larger run remain in %s (not in the index)", len(stale), out_dir)
    atomic_write_json(out_dir / INDEX_FILE, {
        "generator": "vmas synth",
        "config": cfg.model_dump(mode="json"),
        "items": [{"item_id": p.item_id, "video": f"{p.item_id}.mp4", "genre": p.genre, "visual": p.visual,
                   "has_vocals": p.has_vocals, "duration_s": p.duration_s} for p in plans],
    })

