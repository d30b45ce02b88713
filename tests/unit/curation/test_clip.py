import numpy as np

from vmas.curation.clip import clip_starts
from vmas.media.video import square_crop_resize


def test_clip_starts():
    assert clip_starts(10.0, 4.0, 4.0) == [0.0, 4.0]
    assert clip_starts(12.0, 4.0, 4.0) == [0.0, 4.0, 8.0]
    assert clip_starts(10.0, 4.0, 2.0) == [0.0, 2.0, 4.0, 6.0]
    assert clip_starts(3.9, 4.0, 4.0) == []
    assert clip_starts(4.0, 4.0, 4.0) == [0.0]


def test_square_crop_keeps_the_centre():
    frame = np.zeros((90, 160, 3), np.uint8)
    frame[:, 35:125] = 255  # the centre square
    out = square_crop_resize(frame, 64)
    assert out.shape == (64, 64, 3) and out.min() == 255
