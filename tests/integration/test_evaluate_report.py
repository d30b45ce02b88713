"""The report `vmas evaluate` writes for the demo's trained model, read as a person opens it from its
folder: every held-out clip named by its source video and span, with players whose files are there."""

import json
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest

from vmas.evaluation.report import clock
from vmas.layout import output_dir

pytestmark = pytest.mark.slow


class Players(HTMLParser):
    """The first cell's text of every table row, and every ``<audio>``'s attributes, in order."""

    def __init__(self, text: str):
        super().__init__()
        self.first_cells, self.audio, self._cell, self._cells_in_row = [], [], None, 0
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self._cells_in_row = 0
        elif tag == "td":
            self._cells_in_row += 1
            self._cell = [] if self._cells_in_row == 1 else None
        elif tag == "audio":
            self.audio.append(dict(attrs))

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.first_cells.append(" ".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None and data.strip():
            self._cell.append(data.strip())


def test_the_report_names_each_clip_by_its_video_and_span_and_plays_its_music(trained, repo):
    cfg, _ = trained
    vmas = shutil.which("vmas") or str(Path(sys.executable).parent / "vmas")
    done = subprocess.run([vmas, "evaluate", "--no-progress", "--config", str(repo / "configs" / "demo.yaml"),
                           "--set", f"paths.data_dir={cfg.paths.data_dir}",
                           "--set", f"paths.artifacts_dir={cfg.paths.artifacts_dir}"],
                          capture_output=True, text=True, cwd=Path(cfg.paths.artifacts_dir).parent,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    out = output_dir(cfg, "evaluate")
    result = json.loads((out / "evaluation.json").read_text())
    page = Players((out / "report.html").read_text())

    videos = {p.name for p in Path(cfg.paths.data_dir).glob("*.mp4")}
    for clip in result["per_clip"]:  # the demo's sources are files in data/: named by their file name
        name = Path(clip["source_path"]).name
        assert name in videos
        label = f"{name} {clock(clip['start_s'])}–{clock(clip['end_s'])}"
        assert f"{label} {clip['id']}" in page.first_cells, (label, page.first_cells)
    # a generated and a real player per clip, in clip order, each file found from the page's folder
    assert len(page.audio) == 2 * len(result["per_clip"]) and all("controls" in a for a in page.audio)
    played = [(out / unquote(a["src"])).resolve() for a in page.audio]
    assert all(p.is_file() for p in played)
    assert played[0::2] == [Path(c["audio"]).resolve() for c in result["per_clip"]]
    assert played[1::2] == [Path(c["reference_audio"]).resolve() for c in result["per_clip"]]
    assert all(p.parent == out / "audio" for p in played[0::2])
