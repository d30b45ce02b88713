"""What a training run leaves for people to read: the loss history, ``training_curve.csv`` and the curve plots.

:class:`History` is a Lightning callback that keeps every logged train/val scalar with its step;
:func:`write_curve` writes them as the CSV ``dvc plots show`` draws (a resumed run keeps the steps
before it), and :func:`plot_curves` draws ``training_curves.png`` and ``validation_curves.png``.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from lightning.pytorch.callbacks import Callback

from vmas.io import atomic_path
from vmas.plots import training_curves


class History(Callback):
    """Keeps every logged train/val scalar with its step, for the report and the training-curve plot."""

    def __init__(self):
        self.rows: list[dict] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if (batch_idx + 1) % trainer.accumulate_grad_batches == 0:
            row = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")}
            self.rows.append({"step": int(trainer.global_step), **row})

    def on_validation_end(self, trainer, pl_module) -> None:
        row = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        if row and not trainer.sanity_checking:
            self.rows.append({"step": int(trainer.global_step), **row})


CURVE_FILE = "training_curve.csv"  # one row per logged step: what `dvc plots show` draws
CURVE_COLUMNS = ("step", "train/loss", "train/ce", "train/contrastive", "val/ce", "val/contrastive")


def write_curve(rows: list[dict], path: Path, resumed_at: int | None) -> None:
    """The losses by step as CSV; a resumed run keeps the earlier steps of the file it continues."""
    by_step: dict[int, dict] = {}
    if resumed_at is not None and path.is_file():
        for row in csv.DictReader(path.open()):
            if int(row["step"]) <= resumed_at:
                by_step[int(row["step"])] = {k: v for k, v in row.items() if v != ""}
    for row in rows:
        by_step.setdefault(row["step"], {}).update(row)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=[c.replace("/", "_") for c in CURVE_COLUMNS], extrasaction="ignore")
    writer.writeheader()
    for step in sorted(by_step):
        writer.writerow({k.replace("/", "_"): v for k, v in by_step[step].items()})
    with atomic_path(path) as tmp:
        tmp.write_text(text.getvalue())


def plot_curves(rows: list[dict], out: Path) -> list[Path]:
    """``training_curves.png`` (train losses) and, when validated, ``validation_curves.png`` in ``out``."""
    train_rows = [r for r in rows if "train/loss" in r]
    if not train_rows:
        return []
    keys = [k for k in ("train/loss", "train/ce", "train/contrastive") if k in train_rows[0]]
    paths = [training_curves(train_rows, keys, out / "training_curves.png", title="VMAs training")]
    val_rows = [r for r in rows if "val/ce" in r]
    if val_rows:
        paths.append(training_curves(val_rows, ["val/ce", "val/contrastive"], out / "validation_curves.png",
                                     title="held-out videos", smooth=1))
    return paths
