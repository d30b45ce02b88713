"""The report's clips: named by their source and span (from the ingest manifest beside the report),
each with a player for its generated and real music, linked relative to the page."""

import logging
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np

from vmas.curation.ingest import SCHEMA
from vmas.evaluation.report import clock, source_names, write_report
from vmas.manifest import Manifest
from vmas.media.audio import write_wav


class Page(HTMLParser):
    """The per-clip table's rows as cell texts, and every ``<audio>``'s src in order."""

    def __init__(self, text: str):
        super().__init__()
        self.rows, self.audio, self._cell = [], [], None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag == "td":
            self._cell = []
        elif tag == "audio":
            self.audio.append(dict(attrs))

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.rows[-1].append(" ".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None and data.strip():
            self._cell.append(data.strip())


def _artifacts(tmp_path: Path) -> tuple[Path, dict]:
    """An artifacts folder with an ingest manifest of three sources (a local file, a YouTube URL with a
    title, a plain URL), the clips' real and generated WAVs, and an evaluation result over them."""
    artifacts = tmp_path / "artifacts"
    Manifest(artifacts / "manifests" / "ingest", SCHEMA).group("b0").append([
        {"id": "3f2a", "input_id": "3f2a", "key": "k", "path": "/videos/street.mp4", "source": "folder"},
        {"id": "yt-abcdefghijk", "input_id": "yt-abcdefghijk", "key": "k", "source": "disco",
         "url": "https://www.youtube.com/watch?v=abcdefghijk", "video_title": "Night drive"},
        {"id": "url-9", "input_id": "url-9", "key": "k", "source": "manifest", "url": "https://example.org/media/beach.mp4"},
        {"id": "other", "input_id": "other", "key": "k", "path": "/videos/not-held-out.mp4", "source": "folder"}])
    clips = [("3f2a", "/videos/street.mp4", 12.0, 22.0), ("yt-abcdefghijk", "artifacts/download/b0/yt-abcdefghijk.mp4", 62.5, 72.5),
             ("url-9", "artifacts/download/b0/url-9.mp4", 0.0, 10.0), ("gone", "/videos/gone.mov", 3605.0, 3615.0)]
    per_clip = []
    for k, (video, source, start, end) in enumerate(clips):
        generated = artifacts / "evaluate" / "audio" / f"{video}-{k:04d}.wav"
        real = artifacts / "clip" / f"{video}-{k:04d}.wav"
        if video != "gone":  # the last clip's files were deleted since
            write_wav(generated, np.zeros(800, np.float32), 16000)
            write_wav(real, np.zeros(800, np.float32), 16000)
        per_clip.append({"id": f"{video}/{k:04d}", "video_id": video, "source_path": source, "start_s": start,
                         "end_s": end, "audio": str(generated), "reference_audio": str(real), "mv_align": 0.2,
                         "mv_align_reference": 0.4, "video_peaks": 5, "onsets": 9, "reference_onsets": 6})
    result = {"model": "m.pt", "model_sha256": "ab" * 32, "clips": 4, "videos": 4, "embedding": "musicnn-MTT",
              "embedding_dim": 200, "embedding_windows": [4, 4], "motion_threshold": 0.1,
              "sampling": {"guidance": 3.0, "temperature": 1.0, "top_k": 250, "top_p": 0.0, "seed": 0},
              "chance": {"retrieval_r1": 0.25, "retrieval_r10": 1.0}, "metrics": {"mv_align": 0.2},
              "per_clip": per_clip, "figures": ["figures/3f2a-0000_alignment.png"]}
    return artifacts, result


def test_clock_reads_like_a_player():
    assert [clock(s) for s in (0, 12, 72.5, 59.96, 3725)] == ["00:00", "00:12", "01:12.5", "01:00", "1:02:05"]


def test_source_names_prefer_titles_then_file_names_then_urls(tmp_path):
    artifacts, _ = _artifacts(tmp_path)
    names = source_names(artifacts / "manifests" / "ingest", ["3f2a", "yt-abcdefghijk", "url-9", "gone"])
    assert names == {"3f2a": "street.mp4", "yt-abcdefghijk": "Night drive", "url-9": "beach.mp4"}


def test_clips_are_named_by_source_and_span_with_players_for_their_music(tmp_path):
    artifacts, result = _artifacts(tmp_path)
    report = write_report(artifacts / "evaluate" / "report.html", result, None)
    page = Page(report.read_text())
    clip_rows = [r for r in page.rows if len(r) == 8]
    assert [r[0] for r in clip_rows] == ["street.mp4 00:12–00:22 3f2a/0000",
                                         "Night drive 01:02.5–01:12.5 yt-abcdefghijk/0001",
                                         "beach.mp4 00:00–00:10 url-9/0002", "gone.mov 1:00:05–1:00:15 gone/0003"]
    assert clip_rows[3][6:] == ["missing", "missing"]  # no player for files that are not there
    # two players (generated, real) a clip whose files exist; each src relative to the page and found from it
    assert len(page.audio) == 6 and all("controls" in a for a in page.audio)
    for attrs, clip in zip(page.audio, [c for c in result["per_clip"][:3] for _ in (0, 1)]):
        src = unquote(attrs["src"])
        assert not src.startswith(("/", "http")) and (report.parent / src).is_file()
    files = [(report.parent / unquote(a["src"])).resolve() for a in page.audio]
    assert files[:2] == [Path(result["per_clip"][0]["audio"]).resolve(), Path(result["per_clip"][0]["reference_audio"]).resolve()]
    assert "street.mp4 00:12–00:22: alignment" in report.read_text()  # the figure's caption names its clip


def test_names_fall_back_to_file_names_without_a_readable_ingest_manifest(tmp_path, caplog):
    artifacts, result = _artifacts(tmp_path)
    [part] = (artifacts / "manifests" / "ingest" / "b0").glob("*.parquet")
    part.write_bytes(b"not parquet")
    with caplog.at_level(logging.WARNING):
        report = write_report(artifacts / "evaluate" / "report.html", result, None)
    assert str(artifacts / "manifests" / "ingest") in caplog.text
    labels = [r[0] for r in Page(report.read_text()).rows if len(r) == 8]
    assert labels[1] == "yt-abcdefghijk.mp4 01:02.5–01:12.5 yt-abcdefghijk/0001"
