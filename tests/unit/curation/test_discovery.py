"""Finding the videos in a folder: every container FFmpeg reads, real encodes in each; what is skipped
(sound only, text, hidden) is said, by reason and extension, in the log and by `vmas generate`."""

import logging

import av
import numpy as np
import pytest
import typer

from vmas.cli.generation import expand_inputs
from vmas.curation.batches import AUDIO, HIDDEN, NOT_LISTED, NOT_MEDIA, STEM, scan_media, video_extensions
from vmas.curation.ingest import ingest
from vmas.layout import manifest_dir
from vmas.media import write_mp4
from vmas.media.audio import write_wav

VIDEOS = {"a.mp4": None, "b.mkv": ("matroska", "mpeg4"), "c.avi": ("avi", "mpeg4"), "d.mpg": ("mpeg", "mpeg1video"),
          "e.ogv": ("ogg", "libvpx"), "f.ts": ("mpegts", "mpeg2video"), "g.m4v": ("mp4", "mpeg4"),
          "h.wmv": ("asf", "mpeg4"), "i.flv": ("flv", "flv"), "j.3gp": ("3gp", "mpeg4"), "k.nut": ("nut", "mpeg4"),
          "l.ogg": ("ogg", "libvpx")}


def _video(path, fmt: str | None, codec: str | None) -> None:
    if fmt is None:
        write_mp4(path, [np.full((32, 32, 3), 9 * i, np.uint8) for i in range(5)], 5)
        return
    with av.open(str(path), "w", format=fmt) as c:
        stream = c.add_stream(codec, rate=25)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 9 * i, np.uint8), format="rgb24")
            frame.pts = i
            c.mux(stream.encode(frame))
        c.mux(stream.encode(None))


def _sound(path, fmt: str, codec: str) -> None:
    with av.open(str(path), "w", format=fmt) as c:
        stream = c.add_stream(codec, rate=48000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 960), np.float32), format="flt", layout="mono")
        frame.sample_rate, frame.pts = 48000, 0
        c.mux(stream.encode(frame))
        c.mux(stream.encode(None))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    (root / "sub").mkdir()
    (root / ".cache").mkdir()
    for name, how in VIDEOS.items():
        _video(root / ("sub" if name > "f" else "") / name, *(how or (None, None)))
    write_wav(root / "song.wav", np.zeros(1600), 16000)
    write_wav(root / "a.vocals.wav", np.zeros(1600), 16000)  # a reference stem beside a.mp4
    _sound(root / "tune.ogg", "ogg", "libopus")  # Ogg with sound only: told apart by opening it
    _sound(root / "take.flac", "flac", "flac")
    (root / "notes.txt").write_text("not a video")
    (root / "x.dat").write_bytes(b"not a video either" * 10)
    (root / ".DS_Store").write_bytes(b"x")
    (root / ".cache" / "partial.mp4").write_bytes(b"x")
    return root


def test_every_container_ffmpeg_reads_is_found_and_the_rest_is_named(folder):
    scan = scan_media(folder)
    found = sorted(p.name for p in scan.videos)
    assert found == sorted(VIDEOS)  # .avi .mpg .ogv .ts .m4v .wmv .flv .3gp .nut, and Ogg holding video
    names = {reason: sorted(p.name for p in paths) for reason, paths in scan.skipped.items()}
    assert names == {AUDIO: ["song.wav", "take.flac", "tune.ogg"], NOT_MEDIA: ["notes.txt", "x.dat"],
                     HIDDEN: [".DS_Store", "partial.mp4"], STEM: ["a.vocals.wav"]}
    assert scan.summary() == "7 files skipped: 3 audio only (.flac, .ogg, .wav), 2 not a media file (.dat, .txt), 2 hidden"
    assert {"mp4", "mkv", "webm", "mov", "avi", "mpg", "mpeg", "ogv", "m4v", "ts", "mts", "m2ts", "flv", "wmv",
            "3gp"} <= video_extensions() and not {"wav", "mp3", "flac", "txt", "png"} & video_extensions()


def test_a_configured_list_is_taken_as_it_is_and_the_others_are_named(folder):
    scan = scan_media(folder, ["MP4", ".mkv"])
    assert sorted(p.name for p in scan.videos) == ["a.mp4", "b.mkv"]
    # unopened: what FFmpeg could read (x.dat might be a camera's) is only "not listed"
    unlisted = sorted(set(VIDEOS) - {"a.mp4", "b.mkv"} | {"tune.ogg", "x.dat"})
    assert sorted(p.name for p in scan.skipped[NOT_LISTED]) == unlisted
    assert scan.summary().startswith("17 files skipped: 2 audio only (.flac, .wav), 12 not in ingest.extensions "
                                     "(.3gp, .avi, .dat, .flv, .m4v, .mpg, .nut, .ogg, ...), 1 not a media file")


def test_ingest_registers_every_video_and_says_why_a_folder_of_sound_gives_nothing(folder, demo_config, tmp_path,
                                                                                   caplog):
    cfg = demo_config.model_copy(update={"ingest": demo_config.ingest.model_copy(update={"extensions": None}),
                                         "paths": demo_config.paths.model_copy(update={"data_dir": folder,
                                                                                        "artifacts_dir": tmp_path})})
    with caplog.at_level(logging.WARNING, logger="vmas.curation.batches"):
        counts = ingest(cfg, manifest_dir(cfg, "ingest"), [folder], batch="all", progress=False)
    assert counts["new"] == len(VIDEOS)
    assert any("7 files skipped: 3 audio only" in r.getMessage() for r in caplog.records)

    sounds = tmp_path / "sounds"
    sounds.mkdir()
    write_wav(sounds / "one.wav", np.zeros(1600), 16000)
    _sound(sounds / "two.flac", "flac", "flac")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vmas.curation.batches"):
        counts = ingest(cfg, manifest_dir(cfg, "ingest"), [sounds], batch="sounds", progress=False)
    assert counts["new"] == 0
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert record.getMessage() == f"{sounds}: 2 files skipped: 2 audio only (.flac, .wav)"
    with pytest.raises(typer.BadParameter, match=r"sounds: no videos in this folder \(2 files skipped: 2 audio only "
                                                 r"\(\.flac, \.wav\)\)"):
        expand_inputs([sounds])


def test_generate_takes_a_folder_of_any_containers_and_says_what_it_left(folder, capsys):
    videos = expand_inputs([folder])
    assert sorted(p.name for p in videos) == sorted(VIDEOS)
    assert f"{folder}: 7 files skipped: 3 audio only (.flac, .ogg, .wav)" in capsys.readouterr().err
