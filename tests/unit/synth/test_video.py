import numpy as np

from vmas.config import load_config
from vmas.synth import plan_item
from vmas.synth.music import compose
from vmas.synth.plan import STYLES
from vmas.synth.verify import coincidence, motion_curve, motion_peak_times
from vmas.synth.video import frame_travel, render_frames, slide_times


def _plan(repo, visual):
    cfg = load_config(repo / "configs" / "demo.yaml", overrides=["synth.max_duration_s=8", "synth.short_side=96"]).synth
    return next(p for p in (plan_item(cfg, i) for i in range(40)) if p.visual == visual)


def test_travel_peaks_on_the_first_frame_after_each_beat(repo):
    plan = _plan(repo, "dynamic")
    beats = compose(plan).beats
    style = STYLES[plan.genre]
    travel, swell = frame_travel(plan, beats, style.speed, style.impulse)
    assert travel.shape == swell.shape == (int(round(plan.duration_s * plan.fps)),)
    expected = np.ceil(beats * plan.fps - 1e-9).astype(int)
    local_max = [i for i in range(1, len(travel) - 1) if travel[i - 1] < travel[i] > travel[i + 1]]
    assert set(local_max) == set(expected[expected < len(travel) - 1].tolist())


def test_rendered_frames_move_on_the_beat(repo):
    plan = _plan(repo, "dynamic")
    beats = compose(plan).beats
    frames = np.stack(list(render_frames(plan, beats, np.zeros(0))))
    assert frames.shape == (int(round(plan.duration_s * plan.fps)), plan.height, plan.width, 3)
    peaks = motion_peak_times(motion_curve(frames), plan.fps)
    assert coincidence(peaks, beats, 1.0 / plan.fps) > 0.9
    assert coincidence(beats, peaks, 1.0 / plan.fps) > 0.9


def test_static_items_hold_their_frames(repo):
    for visual in ("still", "slideshow"):
        plan = _plan(repo, visual)
        frames = np.stack(list(render_frames(plan, np.zeros(0), np.zeros(0))))
        changes = np.flatnonzero(motion_curve(frames) > 0)
        assert len(changes) == len(slide_times(plan))  # 0 for a still, one per switch for a slideshow
        assert visual == "still" or 2 <= len(changes) <= 4
