"""Great Expectations suites, one per stage, over the rows of that stage's manifest.

Each suite is built in code from the configuration (a threshold or a clip length is part of what
a row must satisfy). Rules that span columns (``kept`` iff ``similarity < threshold``; the length
of ``beat_weights``) are checked on a derived boolean column, because GX's row-query expectation
does not run on pandas. Only usable rows (``error`` null) are validated; failed rows carry their
reason and are counted by the stage summary instead.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa

from vmas.config import Config
from vmas.curation import STAGES
from vmas.layout import manifest_dir, metrics_path
from vmas.manifest import Manifest

# stage -> (expectations for cfg, derived columns for (frame, cfg))
Builder = Callable[[Config], list]
Deriver = Callable[[pd.DataFrame, Config], pd.DataFrame]


def _gxe():
    import great_expectations.expectations as gxe

    return gxe


def _named(expectation, name: str):
    expectation.meta = {**(expectation.meta or {}), "name": name}
    return expectation


def ingest_suite(cfg: Config) -> list:
    gxe = _gxe()
    return [_named(gxe.ExpectColumnValuesToBeUnique(column="id"), "ids unique"),
            _named(gxe.ExpectColumnValuesToBeInSet(column="located", value_set=[True]), "a file or a URL"),
            _named(gxe.ExpectColumnValuesToBeBetween(column="size_bytes", min_value=1), "files not empty"),
            _named(gxe.ExpectColumnValuesToBeBetween(column="video_duration_s", min_value=cfg.ingest.min_duration_s,
                                                     max_value=cfg.ingest.max_duration_s),
                   f"source duration in [{cfg.ingest.min_duration_s:g}, {cfg.ingest.max_duration_s:g}] s")]


def ingest_derived(frame: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    return frame.assign(located=frame["path"].notna() | frame["url"].notna())


def download_suite(cfg: Config) -> list:
    gxe = _gxe()
    return [_named(gxe.ExpectColumnValuesToBeUnique(column="id"), "ids unique"),
            _named(gxe.ExpectColumnValuesToNotBeNull(column="path"), "file present"),
            _named(gxe.ExpectColumnValuesToBeInSet(column="status", value_set=["local", "present", "downloaded"]),
                   "status known"),
            _named(gxe.ExpectColumnValuesToBeBetween(column="bytes", min_value=1, max_value=cfg.download.max_bytes),
                   "size in (0, download.max_bytes]")]


def probe_suite(cfg: Config) -> list:
    gxe = _gxe()
    return [_named(gxe.ExpectColumnValuesToBeUnique(column="id"), "ids unique"),
            _named(gxe.ExpectColumnValuesToBeBetween(column="duration_s", min_value=0, strict_min=True), "duration > 0"),
            _named(gxe.ExpectColumnValuesToBeBetween(column="fps", min_value=1, max_value=240), "fps in range"),
            _named(gxe.ExpectColumnValuesToBeInSet(column="rotation", value_set=[0, 90, 180, 270]), "rotation valid")]


def filter_static_suite(cfg: Config) -> list:
    gxe = _gxe()
    return [_named(gxe.ExpectColumnValuesToBeBetween(column="similarity", min_value=0, max_value=1), "similarity in [0, 1]"),
            _named(gxe.ExpectColumnValuesToNotBeNull(column="similarity"), "similarity present"),
            _named(gxe.ExpectColumnValuesToBeInSet(column="kept_matches_threshold", value_set=[True]),
                   f"kept iff similarity < {cfg.filter_static.threshold}")]


def filter_static_derived(frame: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    return frame.assign(kept_matches_threshold=frame["kept"] == (frame["similarity"] < cfg.filter_static.threshold))


# residual vocals: the separated instrumental keeps at most this much of the mixture's energy as vocals
RESIDUAL_VOCAL_DB_MAX = -10.0
RESIDUAL_VOCAL_SHARE = 0.9  # ... for at least this share of videos (the demo: all 12 under -11.7 dB)


def remove_vocals_suite(cfg: Config) -> list:
    gxe = _gxe()
    return [_named(gxe.ExpectColumnValuesToNotBeNull(column="instrumental_path"), "instrumental written"),
            _named(gxe.ExpectColumnValuesToBeBetween(column="residual_vocal_db", max_value=RESIDUAL_VOCAL_DB_MAX,
                                                     mostly=RESIDUAL_VOCAL_SHARE),
                   f"residual vocals <= {RESIDUAL_VOCAL_DB_MAX:g} dB for {RESIDUAL_VOCAL_SHARE:.0%} of videos")]


def clip_suite(cfg: Config) -> list:
    gxe = _gxe()
    frames = int(round(cfg.clip.seconds * cfg.video.fps))
    return [_named(gxe.ExpectColumnValuesToBeUnique(column="id"), "ids unique"),
            _named(gxe.ExpectColumnValuesToBeInSet(column="frames", value_set=[frames]), f"{frames} frames per clip"),
            _named(gxe.ExpectColumnValuesToBeInSet(column="size", value_set=[cfg.video.size]), "frame size"),
            _named(gxe.ExpectColumnValuesToBeInSet(column="length_ok", value_set=[True]), f"{cfg.clip.seconds:g} s long")]


def clip_derived(frame: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    return frame.assign(length_ok=((frame["end_s"] - frame["start_s"]) - cfg.clip.seconds).abs() < 1e-6)


def beats_suite(cfg: Config) -> list:
    gxe = _gxe()
    return [_named(gxe.ExpectColumnValuesToBeInSet(column="token_rate", value_set=[cfg.codec.frame_rate]), "token rate"),
            _named(gxe.ExpectColumnValuesToBeInSet(column="weights_ok", value_set=[True]),
                   "beat weights: one per token step, finite, in [0, 1]"),
            _named(gxe.ExpectColumnValuesToBeBetween(column="aligned_beats", min_value=0), "aligned beats >= 0")]


def _weights_ok(weights, steps: int) -> bool:
    w = np.asarray(weights if weights is not None else [], dtype=float)
    return len(w) == steps and bool(np.isfinite(w).all()) and bool(((w >= 0) & (w <= 1)).all())


def beats_derived(frame: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    steps = int(round(cfg.clip.seconds * cfg.codec.frame_rate))
    return frame.assign(weights_ok=[_weights_ok(w, steps) for w in frame["beat_weights"]])


def tokenize_suite(cfg: Config) -> list:
    gxe = _gxe()
    steps = int(round(cfg.clip.seconds * cfg.codec.frame_rate))
    return [_named(gxe.ExpectColumnValuesToBeInSet(column="codes_shape_ok", value_set=[True]),
                   f"codes shaped [{cfg.codec.n_q}, {steps}]"),
            _named(gxe.ExpectColumnValuesToBeInSet(column="codes_range_ok", value_set=[True]),
                   f"codes in [0, {cfg.codec.cardinality})"),
            _named(gxe.ExpectColumnValuesToBeInSet(column="weights_ok", value_set=[True]), "beat weights finite, [T]"),
            _named(gxe.ExpectColumnValuesToNotBeNull(column="codec_sha256"), "codec recorded")]


def tokenize_derived(frame: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """Reads each clip's ``.npz`` (one at a time) for the shape and range of its codes."""
    steps = int(round(cfg.clip.seconds * cfg.codec.frame_rate))
    shape_ok, range_ok, weights_ok = [], [], []
    for path in frame["tokens_path"]:
        try:
            with np.load(path) as npz:
                codes, weights = npz["codes"], npz["beat_weights"]
        except (OSError, KeyError, ValueError):
            shape_ok.append(False), range_ok.append(False), weights_ok.append(False)
            continue
        shape_ok.append(codes.shape == (cfg.codec.n_q, steps))
        range_ok.append(bool(codes.size) and int(codes.min()) >= 0 and int(codes.max()) < cfg.codec.cardinality)
        weights_ok.append(_weights_ok(weights, steps))
    return frame.assign(codes_shape_ok=shape_ok, codes_range_ok=range_ok, weights_ok=weights_ok)


def shard_suite(cfg: Config) -> list:
    gxe = _gxe()
    return [_named(gxe.ExpectColumnValuesToBeUnique(column="path"), "one row per shard"),
            _named(gxe.ExpectColumnValuesToBeInSet(column="split", value_set=["train", "val"]), "train or val"),
            _named(gxe.ExpectColumnValuesToBeBetween(column="clips", min_value=1), "no empty shard"),
            _named(gxe.ExpectColumnValuesToMatchRegex(column="sha256", regex=r"^[0-9a-f]{64}$"), "sha256 recorded"),
            _named(gxe.ExpectColumnValuesToBeInSet(column="size_ok", value_set=[True]),
                   f"at most shard.max_bytes ({cfg.shard.max_bytes}) unless one clip"),
            _named(gxe.ExpectColumnValuesToBeInSet(column="in_order", value_set=[True]), "first_id <= last_id")]


def shard_derived(frame: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    return frame.assign(size_ok=(frame["bytes"] <= cfg.shard.max_bytes) | (frame["clips"] == 1),
                        in_order=frame["first_id"] <= frame["last_id"])


EVALUATE_METRICS = ("mv_align", "mv_align_reference", "fad", "kl", "retrieval_r1", "retrieval_r10")


def evaluate_suite(cfg: Config) -> list:
    gxe = _gxe()
    return [_named(gxe.ExpectColumnValuesToBeInSet(column="finite", value_set=[True]), "every metric present and finite"),
            _named(gxe.ExpectTableRowCountToEqual(value=len(EVALUATE_METRICS)), "one row per metric")]


def evaluate_frame(metrics: dict) -> pd.DataFrame:
    """``metrics.json`` as rows ``(metric, value, finite)``, one per expected metric."""
    rows = [{"metric": m, "value": metrics.get(m),
             "finite": isinstance(metrics.get(m), (int, float)) and math.isfinite(metrics[m])} for m in EVALUATE_METRICS]
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Suite:
    build: Builder
    derive: Deriver | None = None


SUITES: dict[str, Suite] = {
    "ingest": Suite(ingest_suite, ingest_derived),
    "download": Suite(download_suite),
    "probe": Suite(probe_suite),
    "filter_static": Suite(filter_static_suite, filter_static_derived),
    "remove_vocals": Suite(remove_vocals_suite),
    "clip": Suite(clip_suite, clip_derived),
    "beats": Suite(beats_suite, beats_derived),
    "tokenize": Suite(tokenize_suite, tokenize_derived),
    "shard": Suite(shard_suite, shard_derived),
    "evaluate": Suite(evaluate_suite),
}


@dataclass
class ExpectationOutcome:
    name: str
    success: bool
    element_count: int | None = None
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    examples: list = field(default_factory=list)
    error: str | None = None  # the expectation could not run (a missing column...), not a data failure


@dataclass
class SuiteOutcome:
    stage: str
    rows: int
    expectations: list[ExpectationOutcome]

    @property
    def success(self) -> bool:
        return all(e.success for e in self.expectations)

    def failures(self) -> list[ExpectationOutcome]:
        return [e for e in self.expectations if not e.success]


def _raised(info) -> str | None:
    info = info or {}
    if "raised_exception" in info:
        return info.get("exception_message") if info["raised_exception"] else None
    for value in info.values():
        if isinstance(value, dict) and value.get("raised_exception"):
            return value.get("exception_message")
    return None


def validate(stage: str, frame: pd.DataFrame, cfg: Config) -> SuiteOutcome:
    """Validate a stage's usable rows with its suite (GX Core, an ephemeral context: nothing on disk)."""
    import os

    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    suite = SUITES[stage]
    if "error" in frame.columns:
        frame = frame[frame["error"].isna()]
    frame = frame.reset_index(drop=True)
    if suite.derive is not None and len(frame):
        frame = suite.derive(frame, cfg)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (context.data_sources.add_pandas(f"{stage}_rows").add_dataframe_asset(name=stage)
             .add_batch_definition_whole_dataframe("all").get_batch(batch_parameters={"dataframe": frame}))
    result_format = {"result_format": "SUMMARY"}
    if "id" in frame.columns:  # name the failing rows by their id, not by their (derived) values
        result_format["unexpected_index_column_names"] = ["id"]
    result = batch.validate(gx.ExpectationSuite(name=stage, expectations=suite.build(cfg)), result_format=result_format)
    outcomes = []
    for r in result.results:
        details = r.to_json_dict().get("result") or {}
        outcomes.append(ExpectationOutcome(
            name=(r.expectation_config.meta or {}).get("name", r.expectation_config.type), success=bool(r.success),
            element_count=details.get("element_count"), unexpected_count=details.get("unexpected_count"),
            unexpected_percent=details.get("unexpected_percent"),
            examples=[row.get("id", row) if isinstance(row, dict) else row for row in
                      (details.get("partial_unexpected_index_list") or details.get("partial_unexpected_list") or [])][:5],
            error=_raised(r.exception_info)))
    order = [e.meta["name"] for e in suite.build(cfg)]
    outcomes.sort(key=lambda o: order.index(o.name) if o.name in order else len(order))  # GX does not keep the order
    return SuiteOutcome(stage, len(frame), outcomes)


CHECK_ROWS = 200_000  # rows validated at once: a whole manifest is checked in slices of this many


def check_stage(stage: str, cfg: Config, batch: str | None = None) -> SuiteOutcome:
    """Validate what ``stage`` wrote under ``cfg.paths.artifacts_dir`` (its manifest, or evaluate's metrics).

    ``batch`` validates only the rows of one ingest batch (a Dagster partition). A whole manifest
    is read in slices of :data:`CHECK_ROWS` rows, batch folder by batch folder, so memory does not
    grow with the dataset; "ids unique" then holds within each slice (ingest keeps ids unique across
    batches by construction).
    """
    if stage not in SUITES:
        raise ValueError(f"no suite for {stage!r}; suites: {', '.join(SUITES)}")
    if stage == "evaluate":
        path = metrics_path(cfg)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no metrics (run `vmas evaluate`)")
        return validate(stage, evaluate_frame(json.loads(path.read_text())), cfg)
    manifest = Manifest(manifest_dir(cfg, stage), STAGES[stage].schema)
    if not manifest.exists():
        raise FileNotFoundError(f"{manifest_dir(cfg, stage)}: no manifest (run `vmas {stage}`)")
    if batch is not None:
        manifest = manifest.group(batch)
    outcomes, pending, rows = [], [], 0
    for record_batch in manifest.iter_batches():
        pending.append(record_batch)
        rows += record_batch.num_rows
        if rows >= CHECK_ROWS:
            outcomes.append(validate(stage, pa.Table.from_batches(pending).to_pandas(), cfg))
            pending, rows = [], 0
    if pending or not outcomes:
        table = pa.Table.from_batches(pending) if pending else manifest.schema.empty_table()
        outcomes.append(validate(stage, table.to_pandas(), cfg))
    return outcomes[0] if len(outcomes) == 1 else _merged(outcomes)


def _merged(outcomes: list[SuiteOutcome]) -> SuiteOutcome:
    """One outcome for a manifest validated in slices: counts summed, the first failures' examples."""
    merged = []
    for parts in zip(*(o.expectations for o in outcomes)):
        elements = sum(p.element_count or 0 for p in parts)
        unexpected = sum(p.unexpected_count or 0 for p in parts)
        merged.append(ExpectationOutcome(
            name=parts[0].name, success=all(p.success for p in parts), element_count=elements,
            unexpected_count=unexpected, unexpected_percent=100.0 * unexpected / elements if elements else 0.0,
            examples=[e for p in parts for e in p.examples][:5], error=next((p.error for p in parts if p.error), None)))
    return SuiteOutcome(outcomes[0].stage, sum(o.rows for o in outcomes), merged)
