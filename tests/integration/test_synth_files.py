"""The embedded set, measured from the written files: decode the mp4s, read the stems."""

import hashlib
import json

import av
import numpy as np
import pytest
import soundfile as sf

from vmas.config import load_config
from vmas.synth import synthesize_dataset
from vmas.synth.verify import measure_set

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def measured(tiny_set):
    return measure_set(tiny_set)


def test_every_item_is_h264_aac_with_stems_and_truth(tiny_set):
    index = json.loads((tiny_set / "synth.json").read_text())
    assert len(index["items"]) == 10
    for entry in index["items"]:
        truth = json.loads((tiny_set / f"{entry['item_id']}.truth.json").read_text())
        plan = truth["plan"]
        with av.open(str(tiny_set / entry["video"])) as container:
            (video,), (audio,) = container.streams.video, container.streams.audio
            assert (video.codec_context.name, audio.codec_context.name) == ("h264", "aac")
            assert (video.codec_context.width, video.codec_context.height) == (plan["width"], plan["height"])
            assert video.average_rate == plan["fps"]
            assert audio.codec_context.sample_rate == plan["sample_rate"]
            assert abs(float(container.duration / av.time_base) - plan["duration_s"]) < 0.15
        for stem in ("instrumental", "vocals"):
            info = sf.info(str(tiny_set / truth["files"][stem]))
            assert info.samplerate == plan["sample_rate"]
            assert abs(info.duration - plan["duration_s"]) < 0.01
        assert truth["tempo_bpm"] > 0 and len(truth["onset_times"]) >= len(truth["beat_times"]) > 0
        assert plan["genre"] in {"electronic", "rock", "folk", "ambient"}


def test_static_share_measured_from_frames(measured):
    summary, rows = measured
    assert summary.static_share >= 0.15
    for row in rows:  # what the frames show is what was planned
        assert row["is_static"] == (row["planned_visual"] != "dynamic"), row["item_id"]


def test_vocal_share_measured_from_stems_and_mix_is_their_sum(measured):
    summary, rows = measured
    assert summary.vocal_share >= 0.30
    for row in rows:
        assert row["measured_vocals"] == row["planned_vocals"], row["item_id"]
        assert row["instrumental_dbfs"] > -40
    assert summary.min_mix_stem_correlation > 0.95


def test_motion_peaks_coincide_with_audio_onsets(measured):
    summary, rows = measured
    assert summary.onset_coincidence >= 0.9, summary
    # The control: the same peaks a quarter beat late mostly miss, so the match above is not chance.
    assert summary.shifted_coincidence <= 0.5, summary
    assert summary.tolerance_s <= 1 / 24 + 0.02 + 1e-9


def _digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_same_seed_same_bytes_and_resume(repo, tmp_path, tiny_set):
    cfg = load_config(repo / "configs" / "demo.yaml",
                      overrides=["synth.min_duration_s=6", "synth.max_duration_s=9", "synth.short_side=96", "synth.n=3"])
    report = synthesize_dataset(cfg.synth, tmp_path / "a", workers=1, progress=False)
    assert (report.rendered, report.skipped) == (3, 0)
    first = _digests(tmp_path / "a")
    for name, digest in first.items():  # one worker here, two in the session set: same bytes
        if name != "synth.json":
            assert _digests(tiny_set)[name] == digest, name
    again = synthesize_dataset(cfg.synth, tmp_path / "a", workers=1, progress=False)
    assert (again.rendered, again.skipped) == (0, 3)
    (tmp_path / "a" / "synth-0000-00001.truth.json").unlink()  # as if killed before the sidecar
    resumed = synthesize_dataset(cfg.synth, tmp_path / "a", workers=1, progress=False)
    assert (resumed.rendered, resumed.skipped) == (1, 2)
    assert _digests(tmp_path / "a") == first
    other_seed = synthesize_dataset(cfg.synth.model_copy(update={"seed": 7}), tmp_path / "b", progress=False)
    assert other_seed.rendered == 3
    # (silent vocal stems of equal length may coincide across seeds; the pictures and music may not)
    def media(d):
        return {v for k, v in d.items() if k.endswith((".mp4", ".instrumental.wav"))}

    assert not media(_digests(tmp_path / "b")) & media(first)


def test_no_temporary_files_left(tiny_set):
    assert not [p for p in tiny_set.iterdir() if p.name.startswith(".")]
    assert np.all([p.stat().st_size > 0 for p in tiny_set.iterdir()])
