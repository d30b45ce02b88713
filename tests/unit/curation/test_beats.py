import numpy as np

from vmas.curation.beats import beat_weights, motion_to_token_rate, video_beat_times


def test_peaks_of_a_token_rate_curve():
    rate = 50
    curve = np.full(200, 1.0)
    for t in (0.5, 1.5, 2.5):
        curve[int(t * rate)] = 6.0
    curve[int(3.0 * rate)] = 1.2  # a wobble, not a beat
    assert np.allclose(video_beat_times(curve, rate, 0.2), [0.5, 1.5, 2.5])
    assert video_beat_times(np.zeros(100), rate, 0.2).size == 0


def test_weights_mark_aligned_beats_and_keep_a_floor():
    music = np.array([0.5, 1.0, 2.0])
    video = np.array([0.52, 2.2])
    weights, aligned = beat_weights(music, video, seconds=3.0, rate=50, tolerance_s=0.06, floor=0.5)
    assert weights.shape == (150,) and aligned == 1
    assert weights[25] == 1.0 and weights[50] == 0.5 and weights[100] == 0.5
    assert set(np.unique(weights)) == {0.5, 1.0}
    flat, _ = beat_weights(music, video, 3.0, 50, 0.06, floor=1.0)
    assert np.all(flat == 1.0)  # all weights equal: the plain loss


def test_motion_resampled_to_token_rate():
    motion = np.array([0.0, 5.0, 0.0])  # change into frames 1, 2, 3 at 10 fps
    curve = motion_to_token_rate(motion, fps=10.0, seconds=0.4, rate=50)
    assert curve.shape == (20,) and np.argmax(curve) == 10  # frame 2 = 0.2 s = step 10


def test_raft_flow_loads_a_local_state_dict(tmp_path):
    import torch
    from torchvision.models.optical_flow import raft_small

    from vmas.media.motion import raft_motion

    torch.manual_seed(0)
    torch.save(raft_small().state_dict(), tmp_path / "raft_small.pt")
    frames = np.random.default_rng(0).integers(0, 255, (3, 128, 128, 3), dtype=np.uint8)
    motion = raft_motion(frames, str(tmp_path / "raft_small.pt"))
    assert motion.shape == (2,) and np.all(np.isfinite(motion)) and np.all(motion >= 0)
