"""ablation: the paper's ablation table (its Table 5) as a pipeline, with seeds and chance levels.

Variants (:data:`VARIANTS`), each trained with every seed in ``seeds`` on the *same* split
(``train.split_seed`` is left alone; ``train.seed`` sets initialisation, batch order and in-step
randomness) and evaluated on the same held-out clips by :func:`vmas.evaluation.evaluate.evaluate`:

- ``baseline``: the plain MusicGen loss with video cross-attention (no contrastive term, no beat weights);
- ``contrastive``: + the global contrastive loss (``train.contrastive_weight`` of the profile);
- ``full``: + beat-aligned token weights (``beat_weighting``): the VMAs model.

Each run lives in ``<out>/<variant>/seed-<s>/{train,evaluate}`` and is an MLflow child run of one
``ablation`` parent run. A rerun redoes nothing that is done (training and evaluation both skip
finished work), so an interrupted ablation resumes. The summary, ``ablation.json`` and
``ablation.html`` (with ``ablation.png``), gives mean and 95 % interval (Student t over seeds) of
MV-Align, FAD, KL, R@1 and R@10 per variant, with the chance levels (MV-Align of each variant's
music against other videos; k/N for retrieval), the real music's MV-Align and the codec's ceiling
(the real music decoded from its tokens), and whether the issue's targets are met.
"""

from __future__ import annotations

import html
import json
import logging
import math
import re
from pathlib import Path

import numpy as np

from vmas.config import Config
from vmas.evaluation.evaluate import evaluate
from vmas.io import atomic_path, atomic_write_json, atomic_write_text
from vmas.layout import model_path, output_dir
from vmas.tracking.runs import child_logger, log_to_run, parent_run
from vmas.training.train import train

log = logging.getLogger(__name__)

NAME = "ablation"
VARIANTS: dict[str, dict] = {
    "baseline": {"contrastive_weight": 0.0, "beat_weighting": False},
    "contrastive": {"beat_weighting": False},
    "full": {},
}
METRICS = ("mv_align", "fad", "kl", "retrieval_r1", "retrieval_r10")
LOWER_IS_BETTER = {"fad", "kl"}
CHANCE = ("mv_align_chance",)
CEILINGS = ("mv_align_reference", "mv_align_reference_chance", "mv_align_codec", "fad_codec", "kl_codec")


def variant_config(cfg: Config, variant: str, seed: int) -> Config:
    """``cfg`` with the variant's loss switches and training seed; everything else (the split included) unchanged."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown ablation variant {variant!r}; choose from {', '.join(VARIANTS)}")
    changes = {**VARIANTS[variant], "seed": seed}
    if "contrastive_weight" not in changes and cfg.train.contrastive_weight <= 0:
        raise ValueError(f"ablation variant {variant!r} needs train.contrastive_weight > 0 in the profile")
    return cfg.model_copy(update={"train": cfg.train.model_copy(update=changes)})


def interval(values: list[float], level: float = 0.95) -> dict:
    """``{"mean", "std", "ci", "n"}``: the mean and the half-width of its Student-t interval (None for n < 2)."""
    from scipy import stats

    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], float)
    if len(x) == 0:
        return {"mean": None, "std": None, "ci": None, "n": 0}
    if len(x) < 2:
        return {"mean": float(x.mean()), "std": None, "ci": None, "n": 1}
    std = float(x.std(ddof=1))
    return {"mean": float(x.mean()), "std": std, "ci": float(stats.t.ppf(0.5 + level / 2, len(x) - 1) * std / math.sqrt(len(x))),
            "n": int(len(x))}


def summarize(runs: list[dict]) -> dict:
    """Per-variant intervals of every metric, the chance levels and ceilings, and the targets' outcome."""
    variants = list(dict.fromkeys(r["variant"] for r in runs))
    table = {}
    for v in variants:
        mine = [r for r in runs if r["variant"] == v]
        table[v] = {m: interval([r["metrics"].get(m) for r in mine]) for m in (*METRICS, *CHANCE)}
    first = runs[0]
    clips = first["clips"]
    reference = {m: interval([r["metrics"].get(m) for r in runs]) for m in CEILINGS}
    chance = {"retrieval_r1": 1 / clips, "retrieval_r10": min(10 / clips, 1.0),
              "mv_align": {v: table[v]["mv_align_chance"]["mean"] for v in variants}}
    return {"variants": table, "reference": reference, "chance": chance, "clips": clips, "videos": first["videos"],
            "targets": targets(table, chance)}


def targets(table: dict, chance: dict) -> list[dict]:
    """The issue's targets for the full model, each with its numbers and whether it holds."""
    out = []
    if "full" in table:
        full = table["full"]
        mv, mv_chance = full["mv_align"]["mean"], full["mv_align_chance"]["mean"]
        if mv is not None and mv_chance:
            out.append({"target": "full MV-Align >= 1.5 x its chance level", "value": mv, "bound": 1.5 * mv_chance,
                        "met": mv >= 1.5 * mv_chance})
        r1 = full["retrieval_r1"]["mean"]
        if r1 is not None:
            out.append({"target": "full R@1 >= 3 x chance", "value": r1, "bound": 3 * chance["retrieval_r1"],
                        "met": r1 >= 3 * chance["retrieval_r1"]})
        if "baseline" in table and full["mv_align"]["std"] is not None:
            base = table["baseline"]["mv_align"]
            stds = [s for s in (full["mv_align"]["std"], base["std"]) if s is not None]
            bound = base["mean"] + 2 * max(stds)
            out.append({"target": "full MV-Align > baseline + 2 x seed std", "value": mv, "bound": bound,
                        "met": mv > bound})
    if "contrastive" in table and "baseline" in table:
        for metric in ("kl", "fad"):
            c, b = table["contrastive"][metric], table["baseline"][metric]
            if c["mean"] is not None and b["mean"] is not None:
                slack = max(b["ci"] or 0.0, c["ci"] or 0.0)  # "not worse": within the seeds' interval
                out.append({"target": f"contrastive {metric.upper()} not worse than baseline", "value": c["mean"],
                            "bound": b["mean"] + slack, "met": c["mean"] <= b["mean"] + slack})
    return out


def ablation(cfg: Config, seeds: tuple[int, ...] = (0, 1, 2), variants: tuple[str, ...] = tuple(VARIANTS),
             out: Path | None = None, track: bool = True, progress: bool = True) -> dict:
    """Train and evaluate every variant x seed, then write the table; returns ``ablation.json``'s content."""

    if not seeds or not variants:
        raise ValueError(f"{NAME}: give at least one seed and one variant (seeds {list(seeds)}, variants {list(variants)})")
    out = Path(out) if out is not None else output_dir(cfg, NAME)
    out.mkdir(parents=True, exist_ok=True)
    for v in variants:
        variant_config(cfg, v, seeds[0])  # every variant is valid before anything runs
    parent = parent_run(cfg, NAME, _fingerprint(cfg), {"stage": NAME}) if track else None
    runs = []
    for variant in variants:
        for seed in seeds:
            run_cfg = variant_config(cfg, variant, seed)
            folder = out / variant / f"seed-{seed}"
            logger = child_logger(run_cfg, parent, f"{variant}-seed{seed}", {
                "stage": NAME, "ablation.variant": variant, "ablation.seed": str(seed)}) if parent else None
            log.info("%s: %s, seed %d", NAME, variant, seed)
            report = train(run_cfg, logger=logger, progress=progress, out=folder / "train")
            result = evaluate(run_cfg, model_path=model_path(run_cfg, folder / "train"), logger=logger,
                              progress=progress, out=folder / "evaluate")
            runs.append({"variant": variant, "seed": seed, "steps": report["steps"], "clips": result["clips"],
                         "videos": result["videos"], "metrics": result["metrics"],
                         "run_id": getattr(logger, "run_id", None) if logger is not None else None})
            atomic_write_json(out / "runs.json", runs)  # what is done so far, readable while it runs
    summary = {"stage": NAME, "seeds": list(seeds), "variants": list(variants), "split_seed": cfg.train.split_seed,
               "steps": cfg.train.max_steps, **summarize(runs), "runs": runs}
    atomic_write_json(out / "ablation.json", summary)
    figure = plot(summary, out / "ablation.png")
    atomic_write_text(out / "ablation.html", render_html(summary, figure.name))
    if parent is not None:
        _log_parent(cfg, parent, summary, [out / "ablation.json", out / "ablation.html", figure])
    log.info("%s: %s", NAME, "; ".join(f"{t['target']}: {'met' if t['met'] else 'NOT met'}" for t in summary["targets"]))
    return summary


def _fingerprint(cfg: Config) -> str:
    """The settings an ablation's runs share (not its seeds or variants: adding a seed adds child runs)."""
    import hashlib

    text = json.dumps(cfg.model_dump(mode="json", exclude={"paths", "tracking"}), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _log_parent(cfg: Config, parent: str, summary: dict, files: list[Path]) -> None:

    metrics = {}
    for variant, values in summary["variants"].items():
        for metric, value in values.items():
            if value["mean"] is not None:
                metrics[f"{variant}/{metric}"] = value["mean"]
            if value["ci"] is not None:
                metrics[f"{variant}/{metric}_ci95"] = value["ci"]
    # MLflow tag names allow letters, digits, _ - . space : / only
    tags = {"target: " + re.sub(r"[^\w\-. :/]", "_", t["target"]): "met" if t["met"] else "not met"
            for t in summary["targets"]}
    tags.update(seeds=",".join(map(str, summary["seeds"])), variants=",".join(summary["variants"]))
    log_to_run(cfg, parent, metrics, tags, files, NAME)


def _cell(value: dict, digits: int = 3) -> str:
    if value["mean"] is None:
        return "–"
    ci = f" ± {value['ci']:.{digits}f}" if value["ci"] is not None else ""
    return f"{value['mean']:.{digits}f}{ci}"


def render_html(summary: dict, figure: str) -> str:
    """The table as a self-contained page (the figure beside it)."""
    names = {"mv_align": "MV-Align ↑", "fad": "FAD ↓", "kl": "KL ↓", "retrieval_r1": "R@1 ↑",
             "retrieval_r10": "R@10 ↑", "mv_align_chance": "MV-Align chance"}
    head = "".join(f"<th>{names[m]}</th>" for m in (*METRICS, *CHANCE))
    body = []
    for variant, metrics in summary["variants"].items():
        n = metrics["mv_align"]["n"]
        body.append(f"<tr><th>{html.escape(variant)} <small>({n} seeds)</small></th>"
                    + "".join(f"<td>{_cell(metrics[m])}</td>" for m in (*METRICS, *CHANCE)) + "</tr>")
    ref, chance = summary["reference"], summary["chance"]
    body.append(f"<tr class=ref><th>real music</th><td>{_cell(ref['mv_align_reference'])}</td><td>0</td><td>0</td>"
                f"<td></td><td></td><td>{_cell(ref['mv_align_reference_chance'])}</td></tr>")
    body.append(f"<tr class=ref><th>real music through the codec</th><td>{_cell(ref['mv_align_codec'])}</td>"
                f"<td>{_cell(ref['fad_codec'])}</td><td>{_cell(ref['kl_codec'])}</td><td></td><td></td><td></td></tr>")
    body.append(f"<tr class=ref><th>chance</th><td>see last column</td><td></td><td></td>"
                f"<td>{chance['retrieval_r1']:.3f}</td><td>{chance['retrieval_r10']:.3f}</td><td></td></tr>")
    rows = "".join(f"<li>{'✅' if t['met'] else '❌'} {html.escape(t['target'])}: {t['value']:.3f} "
                   f"(bound {t['bound']:.3f})</li>" for t in summary["targets"])
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>VMAs ablation</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;
padding:4px 8px;text-align:right}}tr.ref{{color:#555;background:#f6f6f6}}</style></head><body>
<h1>VMAs ablation</h1>
<p>{summary['clips']} held-out clips from {summary['videos']} videos; seeds {summary['seeds']} (mean ± 95 % interval,
Student t over seeds); {summary['steps']} training steps per run; split seed {summary['split_seed']}.
MV-Align chance: each variant's music scored against the other videos' motion peaks. Retrieval chance: k / N.</p>
<table><tr><th></th>{head}</tr>{''.join(body)}</table>
<h2>Targets</h2><ul>{rows}</ul>
<img src="{html.escape(figure)}" alt="ablation" style="max-width:100%">
</body></html>"""


def plot(summary: dict, path: Path) -> Path:
    """Bars with 95 % intervals per metric and variant; MV-Align's chance and ceilings as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    variants = list(summary["variants"])
    fig, axes = plt.subplots(1, len(METRICS), figsize=(3.2 * len(METRICS), 3.4))
    for ax, metric in zip(axes, METRICS):
        values = [summary["variants"][v][metric] for v in variants]
        means = [v["mean"] if v["mean"] is not None else 0.0 for v in values]
        errors = [v["ci"] or 0.0 for v in values]
        ax.bar(variants, means, yerr=errors, capsize=4, color=["#999", "#6a9fd4", "#d46a6a"][: len(variants)])
        if metric == "mv_align":
            chance = [summary["variants"][v]["mv_align_chance"]["mean"] or 0.0 for v in variants]
            ax.plot(variants, chance, "k--", marker="o", label="chance")
            for key, style, label in (("mv_align_reference", ":", "real music"), ("mv_align_codec", "-.", "codec")):
                if summary["reference"][key]["mean"] is not None:
                    ax.axhline(summary["reference"][key]["mean"], color="g", linestyle=style, label=label)
            ax.legend(fontsize=7)
        if metric.startswith("retrieval"):
            ax.axhline(summary["chance"][metric], color="k", linestyle="--", label="chance")
        ax.set_title(metric)
        ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
