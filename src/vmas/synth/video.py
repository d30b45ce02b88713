"""Frames for a synthetic item, moved by the music.

Shapes drift at the genre's base speed; on every motion peak (a beat onset) their speed jumps by
``impulse`` times and decays within a few frames, and they swell. The scene (background and
shapes) cuts on downbeats every ``cut_every_bars`` bars. Frame ``n`` shows time ``n / fps``, so
the largest frame-to-frame change sits on the first frame at or after each onset.
Still items hold one frame; slideshows hold a few near-identical stills.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import cv2
import numpy as np

from vmas.synth.plan import STYLES, ItemPlan, Style

DECAY_S = 0.06  # how fast a motion impulse fades
PULSE_S = 0.1  # how fast the swell on a peak fades


@dataclass
class Shape:
    x: float
    y: float
    size: float  # radius in pixels
    angle: float
    dx: float  # unit direction
    dy: float
    spin: float  # radians per unit of travel
    color: tuple[int, int, int]


@dataclass
class Scene:
    background: np.ndarray  # [H, W, 3] uint8
    angle: float  # direction of the background gradient
    shapes: list[Shape]


def _gradient(width: int, height: int, start: tuple[int, int, int], end: tuple[int, int, int], angle: float) -> np.ndarray:
    """A linear colour gradient from ``start`` to ``end`` along direction ``angle`` (radians): ``[H, W, 3]``."""
    yy, xx = np.mgrid[0:height, 0:width]
    along = np.cos(angle) * xx / width + np.sin(angle) * yy / height
    w = ((along - along.min()) / max(float(np.ptp(along)), 1e-9))[..., None]
    return ((1 - w) * np.array(start) + w * np.array(end)).astype(np.uint8)


def _new_scene(plan: ItemPlan, style: Style, rng: np.random.Generator, previous: Scene | None) -> Scene:
    short = min(plan.width, plan.height)
    # A cut must look like one: the gradient turns by 90-270 degrees from the previous scene's.
    picks = rng.permutation(len(style.backgrounds))[:2]
    angle = float(rng.uniform(0, 2 * np.pi)) if previous is None else previous.angle + float(rng.uniform(0.5, 1.5)) * np.pi
    background = _gradient(plan.width, plan.height, style.backgrounds[picks[0]], style.backgrounds[picks[1]], angle)
    shapes = []
    for _ in range(int(rng.integers(3, 6))):
        heading = rng.uniform(0, 2 * np.pi)
        shapes.append(Shape(
            x=float(rng.uniform(0.15, 0.85) * plan.width), y=float(rng.uniform(0.15, 0.85) * plan.height),
            size=float(rng.uniform(0.1, 0.2) * short), angle=float(rng.uniform(0, np.pi)),
            dx=float(np.cos(heading)), dy=float(np.sin(heading)), spin=float(rng.uniform(-2, 2) / short),
            color=tuple(int(c) for c in style.colors[int(rng.integers(len(style.colors)))]),
        ))
    return Scene(background, angle, shapes)


def _draw(canvas: np.ndarray, shape: Shape, kind: str, scale: float) -> None:
    r = shape.size * scale
    cx, cy = shape.x, shape.y
    if kind in ("square", "triangle"):
        corners = 4 if kind == "square" else 3
        a = shape.angle + np.arange(corners) * 2 * np.pi / corners
        pts = np.stack([cx + r * np.cos(a), cy + r * np.sin(a)], axis=1)
        cv2.fillConvexPoly(canvas, np.round(pts * 16).astype(np.int32), shape.color, cv2.LINE_AA, shift=4)
    else:
        thickness = -1 if kind == "circle" else max(2, int(r * 0.3))
        cv2.circle(canvas, (int(round(cx * 16)), int(round(cy * 16))), int(round(r * 16)), shape.color,
                   thickness, cv2.LINE_AA, shift=4)


def frame_travel(plan: ItemPlan, peaks: np.ndarray, speed: float, impulse: float) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: distance travelled since the previous frame (short sides) and the swell envelope.

    A peak at ``t_k`` kicks in on the first frame at or after it: the step into frame ``n`` is
    ``speed / fps * (1 + impulse * sum_k exp(-(t_n - t_k) / DECAY_S))`` over peaks with ``t_k <= t_n``,
    so the largest step of each peak is the one into that frame. Returns two ``[n_frames]`` arrays.
    """
    n_frames = int(round(plan.duration_s * plan.fps))
    since = np.arange(n_frames)[:, None] / plan.fps - peaks[None, :]  # [F, K]
    after = since >= -1e-9

    def envelope(decay: float) -> np.ndarray:
        return np.where(after, np.exp(-np.maximum(since, 0.0) / decay), 0.0).sum(1)

    travel = speed / plan.fps * (1 + impulse * envelope(DECAY_S))
    travel[0] = 0.0
    return travel, np.minimum(envelope(PULSE_S), 1.5)


def render_frames(plan: ItemPlan, peaks: np.ndarray, cuts: np.ndarray) -> Iterator[np.ndarray]:
    """Yield ``[H, W, 3]`` uint8 RGB frames, ``round(duration * fps)`` of them."""
    style = STYLES[plan.genre]
    rng = plan.rng("video")
    n_frames = int(round(plan.duration_s * plan.fps))
    if plan.visual != "dynamic":
        yield from _static_frames(plan, style, rng, n_frames)
        return
    short = min(plan.width, plan.height)
    travel, swell = frame_travel(plan, peaks, style.speed, style.impulse)
    cut_frames = set(np.ceil(cuts * plan.fps - 1e-9).astype(int).tolist())
    scene = _new_scene(plan, style, rng, None)
    for n in range(n_frames):
        if n in cut_frames:
            scene = _new_scene(plan, style, rng, scene)
        frame = scene.background.copy()
        step = travel[n] * short
        for s in scene.shapes:
            s.x += s.dx * step
            s.y += s.dy * step
            s.angle += s.spin * step
            if not s.size < s.x < plan.width - s.size:
                s.dx = -s.dx
                s.x = float(np.clip(s.x, s.size, plan.width - s.size))
            if not s.size < s.y < plan.height - s.size:
                s.dy = -s.dy
                s.y = float(np.clip(s.y, s.size, plan.height - s.size))
            _draw(frame, s, style.shape, 1.0 + 0.35 * swell[n])
        yield frame


def slide_times(plan: ItemPlan) -> np.ndarray:
    """When a slideshow switches stills (not on the beat: slideshows ignore the music)."""
    if plan.visual != "slideshow":
        return np.zeros(0)
    count = 3 + plan.index % 3
    return np.arange(1, count) * plan.duration_s / count


def _static_frames(plan: ItemPlan, style: Style, rng: np.random.Generator, n_frames: int) -> Iterator[np.ndarray]:
    scene = _new_scene(plan, style, rng, None)
    stills = []
    for _ in range(1 + len(slide_times(plan))):
        frame = scene.background.copy()
        for s in scene.shapes:
            jitter = 0.04 * min(plan.width, plan.height)
            moved = Shape(**{**s.__dict__, "x": s.x + rng.uniform(-jitter, jitter), "y": s.y + rng.uniform(-jitter, jitter)})
            _draw(frame, moved, style.shape, 1.0)
        stills.append(frame)
    switch = np.ceil(slide_times(plan) * plan.fps).astype(int)
    for n in range(n_frames):
        yield stills[int(np.searchsorted(switch, n, side="right"))]
