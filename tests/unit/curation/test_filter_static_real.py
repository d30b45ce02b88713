"""filter_static's default (motion within shots) on real clips: moving footage kept, stills and slideshows dropped.

The clips (tests/fixtures/real_clips, sources and licences in LICENSES.md) are real photographs held,
cut together, cross-faded, panned, zoomed, walked across and swayed, a real animation (Dagster's globe)
and two real screen recordings. The earlier default (``pixels``) gets eight of the thirteen wrong.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from vmas.config import load_config
from vmas.manifest import BASE_FIELDS
from vmas.curation.filter_static import (SCHEMA, _settings, blend_residual, filter_static_video, find_cuts,
                                         longest_uncut, moving_share, still_share, window_motion)

CLIPS = Path(__file__).resolve().parents[2] / "fixtures" / "real_clips"
# name -> kept by the motion default (the truth: does anything move within a shot?)
EXPECTED = {
    "still_photo": False, "nearly_still": False, "slideshow": False, "slideshow_fast": False,
    "slideshow_dissolve": False, "screencast_annotate": False, "screencast_terminal": False,
    "walkers_landscape": True, "walkers_portrait": True, "talking_head": True, "zoom": True,
    "pan_with_cuts": True, "globe": True,
}
MARGIN = 0.25  # every clip's score is at least this far on its side of the threshold (measured: 0.3 and 0.7)


@pytest.fixture(scope="module")
def settings(repo, tmp_path_factory):
    return _settings(load_config(repo / "configs" / "demo.yaml"), tmp_path_factory.mktemp("fs"))


def _row(name: str, settings: dict) -> dict:
    [row] = filter_static_video({"path": str(CLIPS / f"{name}.mp4")}, settings)
    return row


def test_every_fixture_is_listed_with_its_licence():
    clips = sorted(p.stem for p in CLIPS.glob("*.mp4"))
    assert clips == sorted(EXPECTED)
    licences = (CLIPS / "LICENSES.md").read_text()
    assert all(f"`{name}.mp4`" in licences for name in clips)
    assert sum(p.stat().st_size for p in CLIPS.glob("*.mp4")) < 2_000_000


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_moving_footage_kept_stills_and_slideshows_dropped(name, settings):
    row = _row(name, settings)
    assert settings["embedding"] == "motion" and row["embedding"] == "motion"
    assert row["kept"] == EXPECTED[name], row
    assert row["kept"] == (row["similarity"] < settings["threshold"])
    if row["kept"]:
        assert row["similarity"] <= settings["threshold"] - MARGIN, row
        assert row["motion"] >= settings["moving_area"], row
    else:
        assert row["similarity"] >= settings["threshold"] + MARGIN, row
    assert set(row) == set(SCHEMA.names[len(BASE_FIELDS):])  # every column of the stage, nothing else
    assert row["windows"] >= 4 and row["frames_sampled"] > row["windows"]


def test_cuts_are_found_and_do_not_count_as_motion(settings):
    show = _row("slideshow", settings)  # 5 s, a new photo every 1.25 s
    assert show["cuts"] >= 1 and show["similarity"] == 1.0 and show["motion"] == 0.0
    cut_pan = _row("pan_with_cuts", settings)
    assert cut_pan["cuts"] >= 1 and cut_pan["similarity"] == 0.0


def test_the_crop_does_not_change_the_verdict(settings):
    """One scene cut landscape and portrait: same verdict, similar motion (the old default flipped on crops)."""
    land, port = _row("walkers_landscape", settings), _row("walkers_portrait", settings)
    assert land["kept"] and port["kept"] and land["similarity"] == port["similarity"]
    assert 0.67 < land["motion"] / port["motion"] < 1.5


def test_the_source_size_does_not_change_the_verdict(settings, tmp_path):
    """Frames are read at a fixed short side: the same clip encoded at twice the size scores the same."""
    import decord

    from vmas.media.video import write_mp4

    reader = decord.VideoReader(str(CLIPS / "walkers_landscape.mp4"))
    frames = reader.get_batch(list(range(len(reader)))).asnumpy()
    big = tmp_path / "walkers_512.mp4"
    write_mp4(big, (cv2.resize(f, (512, 288), interpolation=cv2.INTER_CUBIC) for f in frames), reader.get_avg_fps(), crf=20)
    [row] = filter_static_video({"path": str(big)}, settings)
    small = _row("walkers_landscape", settings)
    assert row["kept"] and row["similarity"] == small["similarity"]
    assert abs(row["motion"] - small["motion"]) < 0.5 * small["motion"]


def test_the_earlier_pixels_default_gets_these_clips_wrong(settings):
    """Why the default changed: mean frame similarity drops people walking and a talking head, keeps a slideshow."""
    pixels = {**settings, "embedding": "pixels"}
    for name in ("walkers_landscape", "walkers_portrait", "talking_head", "zoom"):
        row = _row(name, pixels)
        assert not row["kept"] and row["similarity"] >= 0.9 and row["motion"] is None, (name, row)
    for name in ("slideshow", "slideshow_fast", "slideshow_dissolve"):
        assert _row(name, pixels)["kept"], name


# ---------------------------------------------------------------- the pieces, on arrays


def _photo(h: int = 96, w: int = 160, seed: int = 0) -> np.ndarray:
    """A textured grey picture (smoothed noise), ``[h, w]`` uint8."""
    noise = np.random.default_rng(seed).normal(128, 60, (h, w)).astype(np.float32)
    return np.clip(cv2.GaussianBlur(noise, (0, 0), 2.0) * 3 - 256, 0, 255).astype(np.uint8)


def _shifted(img: np.ndarray, dx: float) -> np.ndarray:
    m = np.float32([[1, 0, dx], [0, 1, 0]])
    return cv2.warpAffine(img, m, img.shape[::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def test_find_cuts_flags_a_change_of_picture_not_steady_motion_nor_frames_held_on_threes():
    a, b = _photo(seed=0), _photo(seed=1)
    cut = np.stack([a] * 5 + [b] * 5)
    assert find_cuts(cut).tolist() == [False] * 4 + [True] + [False] * 4
    two_cuts = np.stack([a] * 4 + [b] * 4 + [a] * 4)  # several cuts in one window: each replaces the picture
    assert np.flatnonzero(find_cuts(two_cuts)).tolist() == [3, 7]
    pan = np.stack([_shifted(a, 0.7 * k) for k in range(12)])
    assert not find_cuts(pan).any()
    on_threes = np.stack([_shifted(a, 2.0 * (k // 3)) for k in range(12)])
    assert not find_cuts(on_threes).any()
    black = np.zeros((6, 64, 64), np.uint8)
    assert not find_cuts(black).any()


def test_longest_uncut_stretch():
    assert longest_uncut(np.array([False, False, True, False])) == (0, 2)
    assert longest_uncut(np.array([True, False, False, False, True])) == (1, 4)
    assert longest_uncut(np.array([True, True])) == (0, 0)  # a cut at every step: no two frames of a shot


def test_blend_residual_tells_a_cross_fade_from_motion():
    a, b = _photo(seed=0).astype(np.float32), _photo(seed=1).astype(np.float32)
    fade = np.stack([((1 - t) * a + t * b).astype(np.uint8) for t in np.linspace(0, 1, 9)])
    assert blend_residual(fade) < 0.05
    pan = np.stack([_shifted(_photo(seed=0), 0.5 * k) for k in range(9)])
    assert blend_residual(pan) > 0.15
    assert blend_residual(np.stack([_photo()] * 5)) is None  # nothing changed


def test_moving_share_counts_travel_not_grain_nor_exposure():
    rng = np.random.default_rng(0)
    img = _photo(seed=3)
    grain = np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
    assert moving_share(img, grain, 1.0) < 0.001
    brighter = np.clip(img.astype(np.int16) + 25, 0, 255).astype(np.uint8)
    assert moving_share(img, brighter, 1.0) < 0.001
    assert moving_share(img, _shifted(img, 0.4), 1.0) < 0.001  # a sub-pixel tremble
    moved = img.copy()
    moved[30:60, 40:70] = img[30:60, 44:74]  # a patch travels 4 px
    assert 0.01 < moving_share(img, moved, 1.0) < 0.1


def test_window_motion_reads_past_a_cut_and_a_fade_as_still():
    a, b = _photo(seed=0), _photo(seed=1)
    held_then_cut = np.stack([a] * 9 + [b] * 4)
    share, cuts = window_motion(held_then_cut, 1.0, 0.004)
    assert share == 0.0 and cuts.sum() == 1
    fade = np.stack([((1 - t) * a + t * b).astype(np.uint8) for t in np.linspace(0, 1, 13)])
    assert window_motion(fade, 1.0, 0.004)[0] == 0.0
    pan = np.stack([_shifted(a, 0.5 * k) for k in range(13)])  # 6 px in the window
    assert window_motion(pan, 1.0, 0.004)[0] > 0.2


def test_still_share_and_its_edge():
    assert still_share([0.0, 0.0, 0.05, None], 0.004) == pytest.approx(2 / 3)
    assert still_share([None, None], 0.004) == 0.0  # cut at every step all through: never still


def test_embedding_alternatives_still_configurable(repo, tmp_path):
    cfg = load_config(repo / "configs" / "demo.yaml", overrides=["filter_static.embedding=histogram"])
    hist = _settings(cfg, tmp_path)
    assert hist["embedding"] == "histogram" and "moving_px" not in hist
    [row] = filter_static_video({"path": str(CLIPS / "still_photo.mp4")}, hist)
    assert row["embedding"] == "histogram" and row["similarity"] > 0.99 and not row["kept"]
    assert row["motion"] is None and row["cuts"] is None and row["windows"] is None


def test_unreadable_and_too_short_videos_are_row_errors_naming_the_file(settings, tmp_path):
    from vmas.errors import RowError
    from vmas.media.video import write_mp4

    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 100)
    with pytest.raises(RowError) as err:
        filter_static_video({"path": str(junk)}, settings)
    assert err.value.reason == "unreadable" and str(junk) in str(err.value)
    one = tmp_path / "one_frame.mp4"
    write_mp4(one, [np.zeros((64, 64, 3), np.uint8)], 24.0)
    with pytest.raises(RowError) as err:
        filter_static_video({"path": str(one)}, settings)
    assert err.value.reason == "too_short" and str(one) in str(err.value)
