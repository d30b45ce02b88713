"""When to retrain: enough usable clips curated since the champion's training data (``retrain``)."""

from __future__ import annotations

from dataclasses import dataclass

from vmas.config import Config
from vmas.manifest import content_key


@dataclass(frozen=True)
class RetrainDecision:
    due: bool
    reason: str
    clips: int  # usable clips in the tokenize manifest now
    champion_clips: int | None  # clips the champion was trained on (None: no champion, or not recorded)
    data_key: str  # names the current training data: the same key means nothing new to train on


def retraining_decision(cfg: Config) -> RetrainDecision:
    from vmas.data.tokens import usable_clips  # torch and MLflow: loaded when a decision is asked for, not on import
    from vmas.tracking.registry import champion

    rows = [(c["id"], c["key"]) for c in usable_clips(cfg)]
    clips, key = len(rows), content_key("tokenize", rows)[:16]
    if clips == 0:
        return RetrainDecision(False, "no usable clips in the tokenize manifest yet", 0, None, key)
    current = champion(cfg)
    if current is None:
        return RetrainDecision(True, f"no champion yet; {clips} clips to train on", clips, None, key)
    before = current.get("train_clips")
    if before is None:
        return RetrainDecision(True, f"champion version {current['version']} does not record its training clips; "
                                     f"retraining on {clips}", clips, None, key)
    new, needed = clips - before, cfg.retrain.min_new_clips
    if new >= needed:
        return RetrainDecision(True, f"{new} new clips since champion version {current['version']} was trained on "
                                     f"{before} (retrain.min_new_clips {needed})", clips, before, key)
    return RetrainDecision(False, f"{max(new, 0)} new clips since champion version {current['version']} was trained "
                                  f"on {before}; retrain.min_new_clips is {needed}", clips, before, key)
