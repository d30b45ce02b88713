"""What each synthetic item will be, decided before anything is rendered.

An item depends only on ``(seed, index)`` and the synth config, so ``--n 10`` is a prefix of
``--n 20`` and items can be rendered in any order, by any number of workers, with the same bytes.
The genre ties sound to picture: each :class:`Style` fixes the music (tempo range, mode,
instruments) *and* the visuals (palette, shapes, motion speed, how often the scene cuts).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

from vmas.config import SynthConfig

Visual = Literal["dynamic", "still", "slideshow"]
RGB = tuple[int, int, int]

SYNTH_VERSION = 3  # bump when rendering changes: resumption then re-renders everything


@dataclass(frozen=True)
class Style:
    """A genre: its music and the visual family that goes with it."""

    tempo: tuple[int, int]
    modes: tuple[str, ...]
    drums: Literal["four_on_floor", "backbeat", "none"]
    lead: Literal["arp", "power_chords", "pluck", "bell"]
    bass: bool
    pad: bool
    shape: Literal["square", "triangle", "circle", "ring"]
    backgrounds: tuple[RGB, ...]
    colors: tuple[RGB, ...]
    speed: float  # base motion, in short sides per second
    impulse: float  # extra speed on a motion peak, in multiples of ``speed``
    cut_every_bars: int


STYLES: dict[str, Style] = {
    "electronic": Style(
        tempo=(118, 132), modes=("minor",), drums="four_on_floor", lead="arp", bass=True, pad=True,
        shape="square", backgrounds=((12, 4, 32), (24, 0, 48), (0, 12, 28), (30, 10, 60)),
        colors=((255, 0, 170), (0, 240, 255), (140, 60, 255), (255, 230, 0)),
        speed=0.35, impulse=6.0, cut_every_bars=1,
    ),
    "rock": Style(
        tempo=(100, 140), modes=("major", "minor"), drums="backbeat", lead="power_chords", bass=True, pad=False,
        shape="triangle", backgrounds=((20, 20, 20), (60, 0, 0), (235, 235, 225), (40, 30, 30)),
        colors=((220, 20, 30), (250, 250, 250), (255, 120, 0), (90, 90, 90)),
        speed=0.3, impulse=6.0, cut_every_bars=2,
    ),
    "folk": Style(
        tempo=(80, 108), modes=("major",), drums="none", lead="pluck", bass=True, pad=False,
        shape="circle", backgrounds=((236, 222, 190), (60, 80, 40), (120, 80, 40), (200, 170, 120)),
        colors=((180, 100, 30), (80, 130, 50), (150, 40, 30), (230, 190, 60)),
        speed=0.18, impulse=7.0, cut_every_bars=2,
    ),
    "ambient": Style(
        tempo=(60, 80), modes=("minor", "major"), drums="none", lead="bell", bass=False, pad=True,
        shape="ring", backgrounds=((190, 215, 240), (30, 50, 90), (225, 205, 235), (200, 235, 225)),
        colors=((255, 255, 255), (120, 170, 230), (240, 160, 200), (150, 220, 200)),
        speed=0.1, impulse=9.0, cut_every_bars=2,
    ),
}


@dataclass(frozen=True)
class ItemPlan:
    """Everything that decides one item's bytes."""

    item_id: str
    index: int
    seed: int
    genre: str
    visual: Visual
    has_vocals: bool
    duration_s: float
    fps: int
    width: int
    height: int
    sample_rate: int
    tempo_bpm: float
    mode: str
    root_midi: int
    progression: tuple[int, ...] = field(default=())
    version: int = SYNTH_VERSION

    def rng(self, purpose: str) -> np.random.Generator:
        """An independent random stream per purpose, so changing one renderer leaves the others' draws alone."""
        tag = int.from_bytes(hashlib.sha256(purpose.encode()).digest()[:4], "little")
        return np.random.default_rng([self.seed, self.index, tag])

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


PROGRESSIONS = ((0, 5, 3, 4), (0, 3, 4, 4), (0, 5, 2, 6), (0, 4, 5, 3), (0, 0, 3, 4))


def _evenly_spread(index: int, share: float, offset: float) -> bool:
    """True for ``round(n * share)`` of any first ``n`` indices, spread out rather than clumped."""
    return int(np.floor((index + 1) * share + offset)) > int(np.floor(index * share + offset))


def plan_item(cfg: SynthConfig, index: int) -> ItemPlan:
    """Decide item ``index`` of the set generated with ``cfg.seed``."""
    set_rng = np.random.default_rng([cfg.seed, 0x5E7])
    static_offset, vocal_offset = set_rng.random(2)
    rng = np.random.default_rng([cfg.seed, index, 0x17E3])

    is_static = _evenly_spread(index, cfg.static_share, static_offset)
    visual: Visual = ("still", "slideshow")[int(rng.integers(2))] if is_static else "dynamic"
    genre = cfg.genres[index % len(cfg.genres)]  # round robin: every genre in any small set
    style = STYLES[genre]
    portrait = rng.random() < cfg.portrait_share
    short = cfg.short_side
    long = int(round(short * 16 / 9 / 2)) * 2
    width, height = (short, long) if portrait else (long, short)
    return ItemPlan(
        item_id=f"synth-{cfg.seed:04d}-{index:05d}",
        index=index,
        seed=cfg.seed,
        genre=genre,
        visual=visual,
        has_vocals=_evenly_spread(index, cfg.vocal_share, vocal_offset),
        duration_s=round(float(rng.uniform(cfg.min_duration_s, cfg.max_duration_s)), 2),
        fps=int(rng.choice(cfg.fps_choices)),
        width=width,
        height=height,
        sample_rate=int(rng.choice(cfg.sample_rate_choices)),
        tempo_bpm=float(rng.integers(style.tempo[0], style.tempo[1] + 1)),
        mode=str(rng.choice(style.modes)),
        root_midi=int(rng.integers(40, 48)),  # E2..B2: the bass register
        progression=PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))],
    )
