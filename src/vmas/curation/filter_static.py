"""filter_static: drop static and slideshow videos (the paper's DISCO-MV cleaning).

Frames are decoded with decord at ``sample_fps`` (at most ``max_frames``, evenly spread), each is
embedded, and the video's score is the mean cosine similarity over all pairs of its frames. A
video is kept when the score is below ``threshold`` (0.7 in the paper). Embeddings:

- ``pixels`` (default, no weights): the frame at 32 x 32 RGB, minus its own mean, L2-normalised —
  a normalised cross-correlation, so a held frame scores 1 and a moving scene far less;
- ``histogram`` (no weights): an 8 x 8 x 8 RGB colour histogram;
- ``resnet18``: torchvision ResNet-18 penultimate features from a local state dict
  (``filter_static.encoder_weights``), the closest to the paper's learned image features.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa

from vmas.errors import RowError, StageError
from vmas.manifest import Manifest, schema_with
from vmas.media.stems import REFERENCE_COLUMNS
from vmas.stage import Stage

SCHEMA = schema_with(
    pa.field("path", pa.string()),
    pa.field("similarity", pa.float64()),
    pa.field("frames_sampled", pa.int32()),
    pa.field("kept", pa.bool_()),
    pa.field("embedding", pa.string()),
    *(pa.field(column, pa.string()) for column in REFERENCE_COLUMNS),  # ingest's, carried on to remove_vocals
)
EMBED_SIZE = 32


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


def filter_static_video(row: dict, settings: dict) -> list[dict]:
    import decord

    path = row["path"]
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
    similarity = mean_pairwise_similarity(emb, flat)
    return [{"path": path, "similarity": similarity, "frames_sampled": len(idx),
             "kept": similarity < settings["threshold"], "embedding": settings["embedding"],
             **{column: row.get(column) for column in REFERENCE_COLUMNS}}]


def _settings(cfg, out_dir: Path) -> dict:
    fs = cfg.filter_static
    if fs.embedding == "resnet18" and (fs.encoder_weights is None or not Path(fs.encoder_weights).is_file()):
        raise StageError(f"filter_static.embedding is resnet18 but filter_static.encoder_weights "
                         f"({fs.encoder_weights}) is not a file: give a local torchvision ResNet-18 state dict")
    return {"threshold": fs.threshold, "sample_fps": fs.sample_fps, "max_frames": fs.max_frames,
            "embedding": fs.embedding, "encoder_weights": str(fs.encoder_weights) if fs.encoder_weights else None}


def summarize(out: Manifest, settings: dict) -> dict:
    """The dataset-level numbers of the paper's Table 1: mean similarity, kept and dropped."""
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
    description="drop static and slideshow videos by mean pairwise frame similarity",
    summarize=summarize,
)
