"""How much a video moves from frame to frame: the optical-flow curves that beats, evaluate and generate share.

- :func:`farneback_flow`: the OpenCV Farneback flow field between two grey frames (filter_static
  reads where a picture moves from it);
- :func:`farneback_motion`: its mean magnitude between neighbouring grey frames (the default, no weights needed);
- :func:`raft_motion`: torchvision's RAFT-small from local weights;
- :func:`clip_motion`: Farneback motion of a source video over a time span, streamed in chunks so a
  long or large video never sits in memory (evaluate's and generate's MV-Align read this).

The curves (all but the flow field) return ``[N - 1]`` mean flow magnitudes (pixels) for ``N``
frames: entry ``i`` is the motion from frame ``i`` to ``i + 1``.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from vmas.media.video import frame_rate, open_frames


def farneback_flow(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Two ``[H, W]`` uint8 grey frames -> ``[H, W, 2]`` float32 Farneback flow (pixels, x then y)."""
    return cv2.calcOpticalFlowFarneback(first, second, None, 0.5, 3, 15, 3, 5, 1.2, 0)


def farneback_motion(gray: np.ndarray) -> np.ndarray:
    """``[N, H, W]`` uint8 frames -> ``[N - 1]`` mean Farneback flow magnitude between neighbours."""
    out = np.zeros(max(len(gray) - 1, 0))
    for i in range(len(gray) - 1):
        out[i] = float(np.linalg.norm(farneback_flow(gray[i], gray[i + 1]), axis=-1).mean())
    return out


@lru_cache(maxsize=1)
def _raft(weights: str):
    import torch
    from torchvision.models.optical_flow import raft_small

    model = raft_small()
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.eval()


def raft_motion(rgb: np.ndarray, weights: str) -> np.ndarray:
    """``[N, H, W, 3]`` uint8 (sides divisible by 8) -> ``[N - 1]`` mean RAFT-small flow magnitude."""
    import torch

    x = torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    with torch.no_grad():
        flows = _raft(weights)(x[:-1], x[1:], num_flow_updates=6)[-1]  # [N-1, 2, H, W]
    return flows.norm(dim=1).mean((1, 2)).numpy().astype(np.float64)


def clip_motion(source_path: str, start_s: float, end_s: float, flow_size: int,
                chunk: int = 64) -> tuple[np.ndarray, float]:
    """Mean Farneback flow magnitude between neighbouring frames of the source over ``[start_s, end_s]``.

    Returns ``(motion [N - 1], fps)``. Frames are decoded straight to a short side of ``flow_size``
    px and streamed ``chunk`` at a time, so a long or large video never sits in memory.
    """
    import av

    with av.open(source_path) as container:
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
    if min(width, height) <= 0:
        raise ValueError(f"{source_path}: the video stream has no frame size")
    scale = flow_size / min(height, width)
    reader = open_frames(source_path, max(int(round(width * scale)), 8), max(int(round(height * scale)), 8))
    fps, count = frame_rate(reader), len(reader)
    first, last = int(round(start_s * fps)), min(int(round(end_s * fps)), count) - 1
    if last - first < 2:
        raise ValueError(f"{source_path}: fewer than 3 frames in {start_s:.2f}-{end_s:.2f} s")
    motion, previous = [], []
    for begin in range(first, last + 1, chunk):
        frames = reader.get_batch(list(range(begin, min(begin + chunk, last + 1)))).asnumpy()
        gray = previous + [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
        motion.append(farneback_motion(np.stack(gray)))
        previous = gray[-1:]  # the next chunk's first flow starts from this frame
    return np.concatenate(motion), fps
