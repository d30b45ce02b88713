"""filter_static: drop static and slideshow videos (the paper's DISCO-MV cleaning).

A video is kept when its ``similarity`` is below ``threshold`` (0.7). What ``similarity`` measures
depends on ``embedding``:

- ``motion`` (default, no weights): whether anything moves *within a shot*. Windows of
  ``motion_span_s`` start at ``sample_fps`` (at most ``max_frames`` of them); every frame of a window
  is decoded at a short side of ``motion_size`` px, so a portrait and a landscape crop of one scene,
  or a small and a large copy, are judged alike. Cuts are found between neighbouring frames
  (:func:`find_cuts`) and a window is measured on its longest stretch without one, so a slideshow's
  pictures change but nothing in them moves; a stretch that is a blend of its ends (a cross-fade,
  a fade) is still too (:func:`blend_residual`). A window moves when at least ``moving_area`` of the
  frame travels more than ``moving_px`` by Farneback flow, visibly (:func:`moving_share`): grain, a
  change of exposure or a sub-pixel tremble is not motion. ``similarity`` is the share of measured
  windows that are still: 1 for a held image or a slideshow, 0 for people walking past a fixed
  camera, a talking head, a slow zoom, or footage with cuts.
- ``pixels``, ``histogram``, ``resnet18`` (the earlier measures, kept as alternatives): each sampled
  frame is embedded and ``similarity`` is the mean cosine similarity over all pairs of frames:
  ``pixels`` the frame at 32 x 32 RGB minus its mean, L2-normalised (a normalised cross-correlation);
  ``histogram`` an 8 x 8 x 8 RGB colour histogram; ``resnet18`` torchvision ResNet-18 features from a
  local state dict (``filter_static.encoder_weights``). They measure how much the picture *differs*,
  not whether it moves: ``pixels`` scores real footage of people walking past a fixed camera 0.95 and
  a talking head 0.90 (dropped), one scene 0.85 or 0.49 by its crop, and a slideshow of different
  photos 0.45 (kept); ``tests/fixtures/real_clips/LICENSES.md`` has the table for both measures.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa

from vmas.errors import RowError, StageError
from vmas.manifest import Manifest, schema_with
from vmas.media.motion import farneback_flow
from vmas.media.stems import REFERENCE_COLUMNS
from vmas.media.video import open_scaled
from vmas.stage import Stage

SCHEMA = schema_with(
    pa.field("path", pa.string()),
    pa.field("similarity", pa.float64()),
    pa.field("frames_sampled", pa.int32()),
    pa.field("kept", pa.bool_()),
    pa.field("embedding", pa.string()),
    *(pa.field(column, pa.string()) for column in REFERENCE_COLUMNS),  # ingest's, carried on to remove_vocals
    # motion only (null for the embeddings): the median moving share of the frame over the measured
    # windows, the cuts found in them, and how many windows were measured
    pa.field("motion", pa.float64()),
    pa.field("cuts", pa.int32()),
    pa.field("windows", pa.int32()),
)
EMBED_SIZE = 32
# moving_share: a moving pixel also changes by more than this many grey levels (0-255, after a 1 px
# blur) between the two frames; grain and h264 noise stay under it.
MOTION_DIFF_LEVEL = 8.0
# ... and following its flow leaves less than this share of that change unexplained (a pure change
# of brightness, which no displacement explains, is not motion).
UNEXPLAINED = 0.85
# find_cuts, on 1/8-scale thumbnails (mean absolute change per step, in grey levels): at 24 fps a
# held, grainy photo changes up to 2 per step, steady motion 0.3-2, a cut to another picture 50-80.
THUMB_SCALE = 8
CUT_LEVEL = 1.0  # a cut changes at least this much ...
CUT_CORRELATION = 0.5  # ... and its two thumbnails correlate under this (another picture) ...
CUT_SHARE = 0.5  # ... or it carries this share of its window's change (steady motion: about 0.1 a step)
# blend_residual under this: the window is a cross-fade or a fade (measured: under 0.05; a slow zoom 0.17).
BLEND_RESIDUAL = 0.1


def sample_indices(n_frames: int, fps: float, sample_fps: float, max_frames: int) -> np.ndarray:
    """Frame indices at ``sample_fps``, thinned evenly to at most ``max_frames``."""
    step = max(fps / sample_fps, 1.0)
    idx = np.unique(np.floor(np.arange(0, n_frames, step)).astype(int))
    if len(idx) > max_frames:
        idx = idx[np.round(np.linspace(0, len(idx) - 1, max_frames)).astype(int)]
    return idx


def embed_pixels(frames: np.ndarray) -> np.ndarray:
    """``[N, H, W, 3]`` uint8 -> ``[N, H*W*3]`` zero-mean, unit-norm vectors (zero for flat frames)."""
    x = frames.reshape(len(frames), -1).astype(np.float64)
    x -= x.mean(1, keepdims=True)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.where(norm > 1e-6, x / np.maximum(norm, 1e-12), 0.0)


def embed_histogram(frames: np.ndarray, bins: int = 8) -> np.ndarray:
    """``[N, H, W, 3]`` uint8 -> ``[N, bins**3]`` unit-norm colour histograms."""
    q = (frames.astype(np.int64) * bins) // 256
    codes = (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]
    hist = np.stack([np.bincount(c.ravel(), minlength=bins**3) for c in codes]).astype(np.float64)
    return hist / np.linalg.norm(hist, axis=1, keepdims=True)


@lru_cache(maxsize=2)
def _resnet18(weights: str):
    import torch
    import torchvision

    model = torchvision.models.resnet18()
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    model.fc = torch.nn.Identity()
    return model.eval()


def embed_resnet18(frames: np.ndarray, weights: str) -> np.ndarray:
    """``[N, H, W, 3]`` uint8 (any size) -> ``[N, 512]`` unit-norm ResNet-18 features."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
    x = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        feats = _resnet18(weights)((x - mean) / std).numpy().astype(np.float64)
    return feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)


def mean_pairwise_similarity(embeddings: np.ndarray, flat: np.ndarray | None = None) -> float:
    """Mean cosine similarity over all pairs ``i < j`` of ``[N, D]`` unit (or zero) vectors.

    ``flat`` marks frames with no structure at all (zero vectors): two of those count as the same
    picture (similarity 1), so a black or single-colour video is still found static.
    """
    n = len(embeddings)
    if n < 2:
        return 1.0
    sim = embeddings @ embeddings.T
    if flat is not None and flat.any():
        sim = np.where(flat[:, None] & flat[None, :], 1.0, sim)
    return float(sim[np.triu_indices(n, k=1)].mean())


def find_cuts(gray: np.ndarray) -> np.ndarray:
    """``[N, H, W]`` uint8 neighbouring frames -> ``[N - 1]`` bool: is step ``i`` (frame ``i`` to ``i + 1``) a cut.

    On 1/8-scale thumbnails, a step's change is their mean absolute difference less its median (so a
    change of exposure is no change). A cut is a step of at least :data:`CUT_LEVEL` that either
    replaces the picture (the two thumbnails correlate under :data:`CUT_CORRELATION`: a cut to
    another shot, several cuts in one window) or carries at least :data:`CUT_SHARE` of the window's
    whole change (one abrupt jump, such as a slide swapped for a similar one, where steady motion
    spreads over every step). A frame held twice or three times (animation on twos) moves in steps
    whose thumbnails still correlate, so it is not cut up.
    """
    h, w = gray.shape[1:]
    size = (max(w // THUMB_SCALE, 1), max(h // THUMB_SCALE, 1))
    thumbs = np.stack([cv2.resize(g, size, interpolation=cv2.INTER_AREA) for g in gray]).astype(np.float32)
    thumbs = thumbs.reshape(len(gray), -1)
    diff = thumbs[1:] - thumbs[:-1]
    steps = np.abs(diff - np.median(diff, axis=1, keepdims=True)).mean(axis=1)
    centred = thumbs - thumbs.mean(axis=1, keepdims=True)
    spread = np.linalg.norm(centred, axis=1)
    textured = spread / np.sqrt(thumbs.shape[1]) >= 1.0  # a flat thumbnail (a black frame) has no pattern to compare
    corr = np.einsum("ij,ij->i", centred[1:], centred[:-1]) / np.maximum(spread[1:] * spread[:-1], 1e-9)
    corr = np.where(textured[1:] & textured[:-1], corr, 1.0)
    return (steps >= CUT_LEVEL) & ((corr < CUT_CORRELATION) | (steps >= CUT_SHARE * steps.sum()))


def longest_uncut(cuts: np.ndarray) -> tuple[int, int]:
    """``[N - 1]`` cut flags -> ``(first, last)`` frame indices of the longest stretch with no cut inside."""
    bounds = [0, *(np.flatnonzero(cuts) + 1).tolist(), len(cuts) + 1]  # each stretch starts at a bound
    first, last = max(((a, b - 1) for a, b in zip(bounds[:-1], bounds[1:])), key=lambda ab: ab[1] - ab[0])
    return first, last


def moving_share(first: np.ndarray, second: np.ndarray, moving_px: float) -> float:
    """Share of ``[H, W]`` uint8 frame ``first`` that moves to ``second``.

    A pixel moves when its Farneback flow is over ``moving_px`` (so grain and a sub-pixel tremble
    do not count), its (1 px blurred) grey level changes by more than :data:`MOTION_DIFF_LEVEL`
    (flow guessed on a flat area or on noise has nothing to show for it), and following the flow
    leaves under :data:`UNEXPLAINED` of that change (a change of brightness alone travels nowhere).
    """
    a = cv2.GaussianBlur(first, (0, 0), 1.0).astype(np.float32)
    b = cv2.GaussianBlur(second, (0, 0), 1.0).astype(np.float32)
    shift = np.median(b - a)  # a change of exposure is no change
    change = np.abs(b - a - shift)
    changed = change > MOTION_DIFF_LEVEL
    if not changed.any():  # a held picture: no flow needed
        return 0.0
    flow = farneback_flow(first, second)  # first(x) ~ second(x + flow(x))
    ys, xs = np.indices(a.shape, dtype=np.float32)
    followed = cv2.remap(b, xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    left = np.abs(followed - a - shift)
    moved = np.hypot(flow[..., 0], flow[..., 1]) > moving_px
    return float(np.mean(moved & changed & (left < UNEXPLAINED * change)))


def blend_residual(gray: np.ndarray) -> float | None:
    """How far ``[N, H, W]`` uint8 frames are from a blend of the first and last (0: a pure cross-fade).

    Each middle frame is fitted as ``first + alpha * (last - first)`` (one ``alpha`` per frame); the
    result is the largest residual relative to ``|last - first|``. A cross-fade or a fade is such a
    blend (under 0.05 measured); things travelling are not (0.17 for a slow zoom, 0.3-0.5 for a pan,
    a walker or a turning globe). None with no middle frame or no change.
    """
    if len(gray) < 3:
        return None
    x = np.stack([cv2.GaussianBlur(g, (0, 0), 1.0) for g in gray]).astype(np.float32).reshape(len(gray), -1)
    change = x[-1] - x[0]
    norm2 = float(change @ change)
    if norm2 < 1e-6 * change.size:
        return None
    alpha = (x[1:-1] - x[0]) @ change / norm2  # [N - 2]
    residual = np.linalg.norm(x[1:-1] - x[0] - alpha[:, None] * change[None], axis=1)
    return float(residual.max() / np.sqrt(norm2))


def window_motion(gray: np.ndarray, moving_px: float, moving_area: float) -> tuple[float | None, np.ndarray]:
    """One window, ``[N, H, W]`` uint8 neighbouring frames -> ``(moving share or None, [N - 1] cut flags)``.

    The share is measured on the longest stretch without a cut, from its first frame to its last,
    and, when that shows under ``moving_area``, to its middle too (the larger of the two: a movement
    that comes back is still seen). A stretch that is a blend of its ends (:func:`blend_residual`
    under :data:`BLEND_RESIDUAL`: a cross-fade between slides, a fade) has nothing travelling:
    share 0. None when every step is a cut (no two frames of one shot to compare).
    """
    cuts = find_cuts(gray)
    first, last = longest_uncut(cuts)
    if last == first:
        return None, cuts
    residual = blend_residual(gray[first:last + 1])
    if residual is not None and residual < BLEND_RESIDUAL:
        return 0.0, cuts
    share = moving_share(gray[first], gray[last], moving_px)
    middle = (first + last) // 2
    if share < moving_area and middle > first:
        share = max(share, moving_share(gray[first], gray[middle], moving_px))
    return share, cuts


def still_share(shares: list[float | None], moving_area: float) -> float:
    """The score ``motion`` thresholds: the share of measured windows where under ``moving_area`` of the frame moves.

    0.0 when no window could be measured (a cut at every step: the picture never holds still).
    """
    measured = [s for s in shares if s is not None]
    return float(np.mean([s < moving_area for s in measured])) if measured else 0.0


def open_short_side(path: str, short_side: int):
    """``(reader, fps, frame count)``: a decord reader that decodes ``path`` at a short side of ``short_side`` px."""
    import decord

    try:
        probe = decord.VideoReader(path, num_threads=1)
        fps, count = float(probe.get_avg_fps()), len(probe)
        height, width = probe[0].shape[:2]
        del probe
        scale = short_side / min(height, width)
        reader = open_scaled(path, max(2 * round(width * scale / 2), 8), max(2 * round(height * scale / 2), 8))
    except Exception as exc:  # decord raises its own DECORDError; open_scaled a ValueError
        raise RowError("unreadable", f"{path}: decord cannot open it ({exc})") from None
    return reader, fps, count


def measure_motion(path: str, settings: dict) -> dict:
    """One video's ``similarity`` (its still share), ``motion``, ``cuts``, ``windows`` and ``frames_sampled``."""
    reader, fps, count = open_short_side(path, settings["motion_size"])
    span = min(max(int(round(settings["motion_span_s"] * fps)), 1), count - 1)
    if span < 1:
        raise RowError("too_short", f"{path}: only {count} frame(s), no two to compare")
    starts = sample_indices(count - span, fps, settings["sample_fps"], settings["max_frames"])
    shares, cut_frames, decoded = [], set(), 0
    for start in starts:
        rgb = reader.get_batch(list(range(start, start + span + 1))).asnumpy()  # [span + 1, h, w, 3]
        gray = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in rgb])
        share, cuts = window_motion(gray, settings["moving_px"], settings["moving_area"])
        shares.append(share)
        cut_frames.update((start + 1 + np.flatnonzero(cuts)).tolist())  # a cut, by the frame it cuts to
        decoded += len(gray)
    measured = [s for s in shares if s is not None]
    return {"similarity": still_share(shares, settings["moving_area"]), "frames_sampled": decoded,
            "motion": float(np.median(measured)) if measured else None, "cuts": len(cut_frames),
            "windows": len(measured)}


def filter_static_video(row: dict, settings: dict) -> list[dict]:
    """One probed video -> its filter_static row: the score, ``kept`` (score under ``threshold``) and the method."""
    path = row["path"]
    if settings["embedding"] == "motion":
        measured = measure_motion(path, settings)
    else:
        measured = {**measure_similarity(path, settings), "motion": None, "cuts": None, "windows": None}
    return [{"path": path, **measured, "kept": measured["similarity"] < settings["threshold"],
             "embedding": settings["embedding"], **{column: row.get(column) for column in REFERENCE_COLUMNS}}]


def measure_similarity(path: str, settings: dict) -> dict:
    """The embedding measures: mean pairwise cosine similarity of frames sampled at ``sample_fps``."""
    import decord

    small = settings["embedding"] in ("pixels", "histogram")
    try:
        reader = decord.VideoReader(path, width=EMBED_SIZE if small else -1, height=EMBED_SIZE if small else -1)
    except Exception as exc:  # decord raises its own DECORDError
        raise RowError("unreadable", f"{path}: decord cannot open it ({exc})") from None
    idx = sample_indices(len(reader), reader.get_avg_fps(), settings["sample_fps"], settings["max_frames"])
    if len(idx) < 2:
        raise RowError("too_short", f"{path}: only {len(idx)} frame(s) at {settings['sample_fps']} fps to compare")
    frames = reader.get_batch(list(idx)).asnumpy()
    flat = None
    if settings["embedding"] == "pixels":
        emb = embed_pixels(frames)
        flat = ~emb.any(axis=1)
    elif settings["embedding"] == "histogram":
        emb = embed_histogram(frames)
    else:
        emb = embed_resnet18(frames, settings["encoder_weights"])
    return {"similarity": mean_pairwise_similarity(emb, flat), "frames_sampled": len(idx)}


def _settings(cfg, out_dir: Path) -> dict:
    fs = cfg.filter_static
    if fs.embedding == "resnet18" and (fs.encoder_weights is None or not Path(fs.encoder_weights).is_file()):
        raise StageError(f"filter_static.embedding is resnet18 but filter_static.encoder_weights "
                         f"({fs.encoder_weights}) is not a file: give a local torchvision ResNet-18 state dict")
    settings = {"threshold": fs.threshold, "sample_fps": fs.sample_fps, "max_frames": fs.max_frames,
                "embedding": fs.embedding, "encoder_weights": str(fs.encoder_weights) if fs.encoder_weights else None}
    if fs.embedding == "motion":  # only motion reads these: changing them re-runs nothing measured otherwise
        settings |= {"motion_size": fs.motion_size, "motion_span_s": fs.motion_span_s, "moving_px": fs.moving_px,
                     "moving_area": fs.moving_area}
    return settings


def summarize(out: Manifest, settings: dict) -> dict:
    """The dataset-level numbers of the paper's Table 1: mean similarity (``motion``: mean still share), kept, dropped."""
    sims, kept = [], 0
    for row in out.iter_rows(["similarity", "kept", "error"]):
        if row["error"] is None:
            sims.append(row["similarity"])
            kept += bool(row["kept"])
    return {"mean_similarity": float(np.mean(sims)) if sims else None, "kept": kept,
            "dropped": len(sims) - kept, "threshold": settings["threshold"], "embedding": settings["embedding"]}


STAGE = Stage(
    name="filter_static",
    title="dynamic videos (static ones dropped)",
    upstream="probe",
    schema=SCHEMA,
    process=filter_static_video,
    settings=_settings,
    input_fields=("id", "path", "key"),  # probe's key covers the reference stems (from ingest's)
    description="drop static and slideshow videos: no motion within shots (or high mean frame similarity)",
    summarize=summarize,
    version=2,  # 2: the motion measure and its columns
)
