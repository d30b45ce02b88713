import numpy as np

from vmas.config import load_config
from vmas.synth import STYLES, plan_item


def _synth_cfg(repo, *overrides):
    return load_config(repo / "configs" / "demo.yaml", overrides=list(overrides)).synth


def test_plans_are_deterministic_and_a_prefix_property(repo):
    cfg = _synth_cfg(repo)
    a = [plan_item(cfg, i) for i in range(20)]
    b = [plan_item(cfg.model_copy(update={"n": 5}), i) for i in range(5)]
    assert a[:5] == b
    assert [p.fingerprint() for p in a] == [plan_item(cfg, i).fingerprint() for i in range(20)]
    other = [plan_item(cfg.model_copy(update={"seed": 1}), i) for i in range(20)]
    assert [p.fingerprint() for p in other] != [p.fingerprint() for p in a]


def test_shares_hold_for_every_prefix(repo):
    cfg = _synth_cfg(repo)
    plans = [plan_item(cfg, i) for i in range(60)]
    for n in (5, 10, 20, 60):
        static = sum(p.visual != "dynamic" for p in plans[:n])
        vocals = sum(p.has_vocals for p in plans[:n])
        assert static in (int(np.floor(n * cfg.static_share)), int(np.ceil(n * cfg.static_share)))
        assert vocals in (int(np.floor(n * cfg.vocal_share)), int(np.ceil(n * cfg.vocal_share)))
    assert {p.visual for p in plans} == {"dynamic", "still", "slideshow"}


def test_variety(repo):
    cfg = _synth_cfg(repo)
    plans = [plan_item(cfg, i) for i in range(40)]
    assert {p.genre for p in plans} == set(STYLES)
    assert {p.fps for p in plans} == {24, 25, 30}
    assert any(p.width > p.height for p in plans) and any(p.width < p.height for p in plans)
    assert all(p.width % 2 == 0 and p.height % 2 == 0 for p in plans)
    assert all(cfg.min_duration_s <= p.duration_s <= cfg.max_duration_s for p in plans)
    assert max(p.duration_s for p in plans) > 20 and min(p.duration_s for p in plans) < 12
    for p in plans:
        lo, hi = STYLES[p.genre].tempo
        assert lo <= p.tempo_bpm <= hi
