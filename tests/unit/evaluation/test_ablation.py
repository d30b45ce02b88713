"""The ablation table's pieces: variant configs, intervals over seeds, the targets and the report."""

import math

import pytest

from vmas.config import load_config
from vmas.evaluation.ablation import (VARIANTS, interval, plot, render_html, summarize, targets,
                                      variant_config)


def test_variants_change_only_their_switches_and_the_seed(repo):
    cfg = load_config(repo / "configs" / "demo.yaml", overrides=["train.split_seed=5"])
    base = variant_config(cfg, "baseline", 2)
    assert (base.train.contrastive_weight, base.train.beat_weighting, base.train.seed) == (0.0, False, 2)
    contrastive = variant_config(cfg, "contrastive", 1)
    assert contrastive.train.contrastive_weight == cfg.train.contrastive_weight > 0
    assert not contrastive.train.beat_weighting
    full = variant_config(cfg, "full", 0)
    assert full.train.beat_weighting and full.train.contrastive_weight == cfg.train.contrastive_weight
    for c in (base, contrastive, full):  # one split for every run: the same held-out clips
        assert c.train.split_seed == 5 and c.model == cfg.model and c.evaluate == cfg.evaluate
    assert cfg.train.seed == 0  # the profile itself is untouched
    with pytest.raises(ValueError, match="unknown ablation variant"):
        variant_config(cfg, "everything", 0)
    no_contrast = load_config(repo / "configs" / "demo.yaml", overrides=["train.contrastive_weight=0"])
    with pytest.raises(ValueError, match="contrastive_weight > 0"):
        variant_config(no_contrast, "full", 0)
    assert list(VARIANTS) == ["baseline", "contrastive", "full"]


def test_interval_is_the_student_t_interval_of_the_mean():
    three = interval([1.0, 2.0, 3.0])
    assert three["mean"] == 2.0 and three["std"] == 1.0 and three["n"] == 3
    assert three["ci"] == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)  # t(0.975, 2) = 4.3027
    assert interval([0.5]) == {"mean": 0.5, "std": None, "ci": None, "n": 1}
    assert interval([None, float("nan")])["n"] == 0


def _runs(full_mv=0.30, base_mv=0.12, chance=0.12, r1=0.2, clips=60):
    runs = []
    for variant, mv, kl in (("baseline", base_mv, 1.0), ("contrastive", base_mv, 0.9), ("full", full_mv, 0.95)):
        for seed, jitter in enumerate((-0.01, 0.0, 0.01)):
            runs.append({"variant": variant, "seed": seed, "clips": clips, "videos": 12,
                         "metrics": {"mv_align": mv + jitter, "fad": 50.0 + seed, "kl": kl, "retrieval_r1": r1,
                                     "retrieval_r10": 0.5, "mv_align_chance": chance, "mv_align_reference": 0.25,
                                     "mv_align_reference_chance": 0.11, "mv_align_codec": 0.22, "fad_codec": 5.0,
                                     "kl_codec": 0.1}})
    return runs


def test_summary_has_intervals_chance_levels_ceilings_and_targets():
    summary = summarize(_runs())
    assert summary["variants"]["full"]["mv_align"]["mean"] == pytest.approx(0.30)
    assert summary["variants"]["full"]["mv_align"]["ci"] > 0
    assert summary["chance"]["retrieval_r1"] == pytest.approx(1 / 60) and summary["chance"]["retrieval_r10"] == pytest.approx(1 / 6)
    assert summary["reference"]["mv_align_codec"]["mean"] == pytest.approx(0.22)
    met = {t["target"]: t["met"] for t in summary["targets"]}
    assert met == {"full MV-Align >= 1.5 x its chance level": True, "full R@1 >= 3 x chance": True,
                   "full MV-Align > baseline + 2 x seed std": True, "contrastive KL not worse than baseline": True,
                   "contrastive FAD not worse than baseline": True}


def test_targets_fail_at_chance():
    summary = summarize(_runs(full_mv=0.125, r1=1 / 60))
    met = {t["target"]: t["met"] for t in targets(summary["variants"], summary["chance"])}
    assert not met["full MV-Align >= 1.5 x its chance level"]
    assert not met["full R@1 >= 3 x chance"] and not met["full MV-Align > baseline + 2 x seed std"]


def test_report_and_figure(tmp_path):
    summary = {"seeds": [0, 1, 2], "steps": 10, "split_seed": 0, **summarize(_runs())}
    figure = plot(summary, tmp_path / "ablation.png")
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = render_html(summary, figure.name)
    assert "ablation.png" in page and "0.300 ±" in page and "real music through the codec" in page
    assert page.count("✅") == 5
