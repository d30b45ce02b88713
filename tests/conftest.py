"""Shared fixtures: the real profiles, shrunk; a tiny synthetic set rendered once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

REPO = Path(__file__).resolve().parents[1]

# Short items keep the end-to-end tests quick; everything else is the demo profile as shipped.
TINY_SYNTH = ["synth.min_duration_s=6", "synth.max_duration_s=9", "synth.short_side=96"]


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture
def demo_config():
    from vmas.config import load_config

    return load_config(REPO / "configs" / "demo.yaml")


@pytest.fixture(scope="session")
def tiny_set(tmp_path_factory) -> Path:
    """Ten short items (two static, four with vocals by the demo shares) rendered with two workers."""
    from vmas.config import load_config
    from vmas.synth import synthesize_dataset

    cfg = load_config(REPO / "configs" / "demo.yaml", overrides=[*TINY_SYNTH, "synth.n=10"])
    out = tmp_path_factory.mktemp("synth")
    synthesize_dataset(cfg.synth, out, workers=2, progress=False)
    return out
