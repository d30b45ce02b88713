"""`dvc plots show` with the repository's dvc.yaml and .dvc/config renders offline: the page DVC writes
is .dvc/plots/offline.html with Vega inlined, so no script comes from a CDN, and the training curve's
data and image are in it or beside it."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

BIN = Path(sys.executable).parent


def test_plots_show_writes_a_page_that_loads_nothing_from_the_network(repo, tmp_path):
    root = tmp_path / "project"
    (root / ".dvc").mkdir(parents=True)
    config = (repo / ".dvc" / "config").read_text()
    assert re.search(r"^\[plots\]\n\s+html_template = plots/offline\.html$", config, re.M), config
    # the repository's config as it is, in a project without git (the autostage option needs git)
    (root / ".dvc" / "config").write_text(config.replace("[core]", "[core]\n    no_scm = True", 1)
                                          .replace("    autostage = true\n", ""))
    shutil.copytree(repo / ".dvc" / "plots", root / ".dvc" / "plots")
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy2(repo / name, root / name)
    train = root / "artifacts" / "train"  # the train stage's plot outputs (params.yaml's paths.artifacts_dir)
    train.mkdir(parents=True)
    (train / "training_curve.csv").write_text("step,train_loss\n1,5.25\n2,4.5\n3,3.75\n")
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(train / "training_curves.png")

    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    shown = subprocess.run([str(BIN / "dvc"), "plots", "show", "-o", "shown"], cwd=root, capture_output=True,
                           text=True, env=env)
    assert shown.returncode == 0, shown.stderr[-3000:]
    page = (root / "shown" / "index.html").read_text()

    scripts = re.findall(r"<script\b[^>]*>", page)
    assert len(scripts) >= 4 and not any("src" in s for s in scripts), scripts  # vega, vega-lite, vega-embed, the plot
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)  # nothing fetched from elsewhere
    assert "cdn.jsdelivr" not in page and "vegaEmbed(" in page and "vega-lite" in page
    assert '"train_loss": "3.75"' in page or '"train_loss":"3.75"' in page  # the curve's data is inlined
    [image] = re.findall(r'<img src="([^"$]+)"', page)  # ($: vega-embed's own code builds one from a template)
    assert not image.startswith(("/", "http")) and (root / "shown" / image).is_file()
