"""Blocking Dagster asset checks: each stage's Great Expectations suite, and the codec's quality gate.

Every stage with a suite (``vmas.quality.suites.SUITES``) gets one check, ``great_expectations``,
declared on its asset and evaluated by the asset right after it materialises. ``train_codec`` gets
``codec_gate``: the held-out reconstruction numbers against ``codec.gate``. Both are *blocking*:
when one fails, Dagster records the asset's materialisation and the failed check, marks the step
failed, and nothing downstream of the asset runs in that run (``materialize`` then starts no further
run). The GX check's metadata is a table of every expectation (how many rows failed it, some of their
ids); the gate's carries the measured numbers and their thresholds.
"""

import warnings

import dagster as dg

from vmas.config import Config

CHECK = "great_expectations"
CODEC_GATE = "codec_gate"

EXPECTATIONS_SCHEMA = dg.TableSchema(columns=[
    dg.TableColumn("expectation", "string"),
    dg.TableColumn("success", "bool"),
    dg.TableColumn("unexpected count", "int", description="rows that broke it"),
    dg.TableColumn("unexpected %", "float", description="of the rows it looked at"),
    dg.TableColumn("examples", "string", description="ids of some rows that broke it"),
    dg.TableColumn("error", "string", description="why it could not run (a missing column ...), not a data failure"),
])


def suite_check_spec(stage: str, partitions_def: dg.PartitionsDefinition | None = None) -> dg.AssetCheckSpec:
    """The check of ``stage``; with ``partitions_def`` its results are kept per partition (per batch),
    a Dagster 1.13 feature still marked preview (hence the silenced warning)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=dg.PreviewWarning)
        return dg.AssetCheckSpec(CHECK, asset=stage, blocking=True, partitions_def=partitions_def,
                                 description=f"The {stage} Great Expectations suite over the stage's usable rows "
                                             f"(`vmas check {stage}`); blocks everything downstream when it fails.")


def expectations_table(outcome) -> dg.MetadataValue:
    """A suite's outcome (:class:`vmas.quality.suites.SuiteOutcome`) as a table, one row per expectation."""
    records = []
    for e in outcome.expectations:
        percent = e.unexpected_percent
        records.append(dg.TableRecord({
            "expectation": e.name, "success": bool(e.success),
            "unexpected count": None if e.unexpected_count is None else int(e.unexpected_count),
            "unexpected %": None if percent is None else round(float(percent), 3),
            "examples": ", ".join(str(x) for x in e.examples) if not e.success else "",
            "error": e.error or ""}))
    return dg.MetadataValue.table(records, schema=EXPECTATIONS_SCHEMA)


def suite_check_result(stage: str, cfg: Config, batch: str | None = None,
                       rows: int | None = None) -> dg.AssetCheckResult:
    """Validate ``stage``'s output (one ingest batch of it, when given) and describe the outcome.

    ``rows`` 0 (the stage wrote nothing for this batch: its videos were all claimed by another batch,
    or dropped upstream) passes without a manifest to read.
    """
    from vmas.quality.suites import check_stage

    if rows == 0:
        return dg.AssetCheckResult(check_name=CHECK, passed=True, description="no rows in this batch",
                                   metadata={"rows": dg.MetadataValue.int(0)})
    return suite_outcome_result(check_stage(stage, cfg, batch))


def suite_outcome_result(outcome) -> dg.AssetCheckResult:
    """The check result of a suite's outcome: ``rows`` (validated), ``expectations`` (the table) and, per
    failed expectation, ``failed: <name>`` (how many rows broke it)."""
    metadata: dict[str, dg.MetadataValue] = {"rows": dg.MetadataValue.int(outcome.rows),
                                             "expectations": expectations_table(outcome)}
    for e in outcome.failures():
        if not e.error:
            metadata[f"failed: {e.name}"] = dg.MetadataValue.int(int(e.unexpected_count or 0))
    failed = [e.name + (f" (could not run: {e.error})" if e.error else "") for e in outcome.failures()]
    description = (f"{len(outcome.expectations)} expectations passed on {outcome.rows} rows" if not failed else
                   f"failed: {'; '.join(failed)}")
    return dg.AssetCheckResult(check_name=CHECK, passed=outcome.success, metadata=metadata, description=description,
                               severity=dg.AssetCheckSeverity.ERROR)


def codec_gate_spec() -> dg.AssetCheckSpec:
    """``train_codec``'s quality gate as a blocking check: tokenize never runs on a codec that failed it."""
    return dg.AssetCheckSpec(CODEC_GATE, asset="train_codec", blocking=True,
                             description="The trained codec's held-out SI-SNR, mel distance and onset F-measure "
                                         "against codec.gate; blocks tokenize (and everything after) when it fails. "
                                         "Passes at once when codec.pretrained is set (nothing is trained).")


# (report metric, label, gate threshold, threshold label): what the gate compares, in the report's words
_GATE = [("si_snr_db", "held-out SI-SNR (dB)", "min_si_snr_db", "min SI-SNR (dB)"),
         ("mel_distance_db", "held-out mel distance (dB)", "max_mel_distance", "max mel distance (dB)"),
         ("onset_f", "held-out onset F", "min_onset_f", "min onset F")]


def codec_gate_result(report: dict) -> dg.AssetCheckResult:
    """The ``codec_gate`` check of a ``train_codec`` report (``report.json``'s content).

    Passed or failed as the report's ``gate.passed`` says (``vmas.codec.train_codec.judge`` decided it);
    its metadata holds each held-out number beside its threshold. A report of ``codec.pretrained``
    (``skipped``: nothing trained) passes, saying so.
    """
    if "skipped" in report:
        return dg.AssetCheckResult(
            check_name=CODEC_GATE, passed=True, severity=dg.AssetCheckSeverity.ERROR,
            description=f"{report['skipped']}: that codec is used as it is, nothing was trained to judge",
            metadata={"pretrained": dg.MetadataValue.path(str(report.get("codec", "")))})
    if "gate" not in report or "metrics" not in report:
        raise ValueError(f"a train_codec report without its gate or metrics (keys: {', '.join(sorted(report))}): "
                         "not one train_codec wrote")
    gate, metrics = report["gate"], report["metrics"]
    metadata: dict[str, dg.MetadataValue] = {}
    for metric, label, threshold, threshold_label in _GATE:
        metadata[label] = dg.MetadataValue.float(float(metrics[metric]))
        metadata[threshold_label] = dg.MetadataValue.float(float(gate[threshold]))
    metadata["onset tolerance (s)"] = dg.MetadataValue.float(float(gate["onset_tolerance_s"]))
    if "held_out_clips" in report:
        metadata["held-out clips"] = dg.MetadataValue.int(int(report["held_out_clips"]))
    passed = bool(gate["passed"])
    if passed:
        description = (f"held-out SI-SNR {metrics['si_snr_db']:.2f} dB >= {gate['min_si_snr_db']}, mel distance "
                       f"{metrics['mel_distance_db']:.2f} dB <= {gate['max_mel_distance']}, onset F "
                       f"{metrics['onset_f']:.3f} >= {gate['min_onset_f']}")
    else:
        description = "; ".join(gate.get("problems") or ["codec.gate failed"])
        metadata["problems"] = dg.MetadataValue.json(list(gate.get("problems") or []))
    return dg.AssetCheckResult(check_name=CODEC_GATE, passed=passed, metadata=metadata, description=description,
                               severity=dg.AssetCheckSeverity.ERROR)
