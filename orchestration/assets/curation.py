"""Pipeline assets, one per stage in ``vmas.curation.STAGES``, with the registry's dependencies and titles.

Raw data arrive in batches: the new-video sensor registers each batch as a dynamic partition,
and materialising a partition runs each batch-scoped stage on that batch's videos only
(``run_stage(..., batch=)``); the manifests are shared, so earlier batches are never redone.
Dataset-scoped stages (``train_codec``: it reads every batch's clips) are unpartitioned.

Every asset that writes a manifest reports Dagster's table metadata (row counts, column schema); the
column schema is on the asset's definition too, so the UI shows it before anything ran. ``train_codec``
carries the blocking ``codec_gate`` check: a codec below ``codec.gate`` is still recorded (its numbers,
its curves) but stops the run before tokenize.
"""

from pathlib import Path

import dagster as dg

from orchestration.assets.metadata import (column_schema, curves, figure, floats, link, manifest_rows, table_metadata,
                                           tags)
from orchestration.checks import codec_gate_result, codec_gate_spec, suite_check_result, suite_check_spec
from orchestration.kubernetes_curation import step_tags
from orchestration.resources import MlflowTracking, VmasConfig
from vmas.curation import STAGES
from vmas.curation.batches import batch_video_ids
from vmas.layout import manifest_dir, output_dir
from vmas.quality.suites import SUITES
from vmas.stage import Stage

ingest_batches = dg.DynamicPartitionsDefinition(name="ingest_batches")

GROUP = "curation"
CODEC_CURVES = ["loss", "msspec", "sisnr", "commitment"]  # the codec's training losses (its history's keys)


def _stage_metadata(report, cfg, stage: str) -> dict:
    """A row stage's run report (``vmas.curation.runner.RunReport``, one batch's) as asset metadata."""
    metadata = {"rows": dg.MetadataValue.int(report.rows), "errors": dg.MetadataValue.int(report.errors),
                "processed": dg.MetadataValue.int(report.processed),
                "already done": dg.MetadataValue.int(report.skipped),
                "seconds": dg.MetadataValue.float(float(report.seconds)),
                "manifest": dg.MetadataValue.path(str(manifest_dir(cfg, stage).resolve()))}
    if report.errors_by_reason:
        metadata["errors by reason"] = dg.MetadataValue.json(report.errors_by_reason)
    for key, value in (report.extra or {}).items():  # kept / dropped, mean similarity, SDR ...
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, (int, float)):
            metadata[key.replace("_", " ")] = dg.MetadataValue.float(float(value)) if isinstance(value, float) \
                else dg.MetadataValue.int(value)
        elif isinstance(value, dict):
            metadata[key.replace("_", " ")] = dg.MetadataValue.json(value)
    metadata.update(table_metadata(STAGES[stage].schema, manifest_rows(manifest_dir(cfg, stage)), report.rows))
    return metadata


def _ingest_metadata(counts: dict, cfg, batch: str | None) -> tuple[dict, int]:
    rows = len(batch_video_ids(manifest_dir(cfg, "ingest"), batch))
    return {"rows": dg.MetadataValue.int(rows), "new": dg.MetadataValue.int(counts["new"]),
            "already known": dg.MetadataValue.int(counts["known"]),
            "duplicates": dg.MetadataValue.int(counts["duplicate"]),
            "unreadable": dg.MetadataValue.int(counts["unreadable"]),
            "data dir": dg.MetadataValue.path(str(Path(cfg.paths.data_dir).resolve())),
            **table_metadata(STAGES["ingest"].schema, manifest_rows(manifest_dir(cfg, "ingest")), rows)}, rows


def _train_codec(context: dg.AssetExecutionContext, cfg, logger) -> dict:
    """``train_codec``'s report. A codec that fails ``codec.gate`` makes the library raise (the CLI and DVC
    stop there); here its report is returned instead, so the materialisation is recorded with its numbers
    and the blocking ``codec_gate`` check fails on it. Any other error is raised as it is."""
    from vmas.errors import CodecGateError

    try:
        return STAGES["train_codec"].run(cfg, progress=False, logger=logger)
    except CodecGateError as exc:
        context.log.error(str(exc))
        return exc.report


def _codec_metadata(report: dict, cfg, mlflow: MlflowTracking) -> dict:
    from vmas.codec.loading import resolve_codec_path

    out = output_dir(cfg, "train_codec")
    if "metrics" not in report:
        return {"codec": dg.MetadataValue.path(str(resolve_codec_path(cfg))),
                "pretrained": dg.MetadataValue.text(report.get("skipped", ""))}
    passed = report["gate"]["passed"]
    # the published codec, or the candidate kept for inspection (tokenize does not use it)
    metadata = {"codec" if passed else "rejected candidate": dg.MetadataValue.path(
        str(resolve_codec_path(cfg) if passed else (out / "candidate.bin").resolve()))}
    metadata.update(floats(report["metrics"], "held-out "))
    metadata.update({"train clips": dg.MetadataValue.int(report["train_clips"]),
                     "steps": dg.MetadataValue.int(report["steps"])})
    link(metadata, "MLflow run", mlflow.run_url(cfg, report.get("run_id")))
    metadata.update(curves(report.get("history") or [], CODEC_CURVES))
    for name in ("training_curves", "reconstruction"):
        if (value := figure(out / f"{name}.png")) is not None:
            metadata[name.replace("_", " ")] = value
    return metadata


def _report_metadata(report: dict) -> dict:
    """A whole stage's report as asset metadata: its numbers and its text fields (``shard``: the URL,
    shards written and kept, clips)."""
    metadata = {}
    for key, value in report.items():
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            continue
        label = key.replace("_", " ")
        metadata[label] = (dg.MetadataValue.int(value) if isinstance(value, int) else
                           dg.MetadataValue.float(float(value)) if isinstance(value, float) else
                           dg.MetadataValue.text(value))
    return metadata


def _description(name: str, stage: Stage) -> str:
    where = "on this batch's videos" if stage.scope == "batch" else "on every batch"
    return f"{stage.title[:1].upper()}{stage.title[1:]}: {stage.description} (`vmas {name}`, {where})."


def _definition_metadata(stage: Stage) -> dict | None:
    """What the asset's definition says before it runs: its manifest's columns."""
    if stage.schema is None:
        return None
    return {"dagster/column_schema": dg.MetadataValue.table_schema(column_schema(stage.schema))}


def _check_specs(name: str, partitions: dg.PartitionsDefinition | None) -> list[dg.AssetCheckSpec] | None:
    specs = [suite_check_spec(name, partitions)] if name in SUITES else []
    if name == "train_codec":
        specs.append(codec_gate_spec())
    return specs or None


def whole_stage_asset(name: str) -> dg.AssetsDefinition:
    """The asset of a stage that runs whole (``ingest``: this batch's new files; ``train_codec``; ``shard``)."""
    stage = STAGES[name]
    partitions = ingest_batches if stage.scope == "batch" else None

    @dg.asset(name=name, partitions_def=partitions, group_name=GROUP, deps=list(stage.needs),
              kinds={"parquet"} if stage.schema is not None else {"pytorch", "mlflow"},
              check_specs=_check_specs(name, partitions), metadata=_definition_metadata(stage),
              description=_description(name, stage), op_tags=step_tags(name))
    def _asset(context: dg.AssetExecutionContext, vmas: VmasConfig, mlflow: MlflowTracking):
        from vmas.tracking.runs import mlflow_logger

        cfg = mlflow.apply(vmas.load())
        batch = context.partition_key if partitions is not None else None
        logger = mlflow_logger(cfg, name, {"stage": name, **tags(context)}) if stage.tracked(cfg) else None
        if name == "train_codec":
            report = _train_codec(context, cfg, logger)
        else:
            report = stage.run(cfg, progress=False, batch=batch, logger=logger)
        rows = None
        if name == "ingest":
            metadata, rows = _ingest_metadata(report, cfg, batch)
            context.log.info("ingest %s: %d new videos (%d in the batch), %d already known, %d duplicates", batch,
                             report["new"], rows, report["known"], report["duplicate"])
        elif name == "train_codec":
            metadata = _codec_metadata(report, cfg, mlflow)
        else:
            metadata = _report_metadata(report)
            if stage.schema is not None:  # shard: one row per shard, over every batch
                metadata.update(table_metadata(stage.schema, manifest_rows(manifest_dir(cfg, name))))
        yield dg.MaterializeResult(metadata=metadata)
        if name in SUITES:
            yield suite_check_result(name, cfg, batch, rows)
        if name == "train_codec":
            yield codec_gate_result(report)

    return _asset


def row_stage_asset(name: str) -> dg.AssetsDefinition:
    """The asset of a row-by-row stage: ``run_stage`` on this batch's videos."""
    stage = STAGES[name]

    @dg.asset(name=name, partitions_def=ingest_batches, group_name=GROUP, deps=list(stage.needs), kinds={"parquet"},
              check_specs=_check_specs(name, ingest_batches), metadata=_definition_metadata(stage),
              description=_description(name, stage), op_tags=step_tags(name))
    def _asset(context: dg.AssetExecutionContext, vmas: VmasConfig):
        from vmas.curation.runner import run_stage

        cfg = vmas.load()
        report = run_stage(name, cfg, workers=vmas.workers, progress=False, batch=context.partition_key)
        context.log.info("%s %s: %d rows (%d errors), %d processed, %d already done, %.1f s", name,
                         context.partition_key, report.rows, report.errors, report.processed, report.skipped,
                         report.seconds)
        yield dg.MaterializeResult(metadata=_stage_metadata(report, cfg, name))
        if name in SUITES:
            yield suite_check_result(name, cfg, context.partition_key, report.rows)

    return _asset


# the stages a partition run curates (what the new-video sensor starts and the `curate` job backfills)
BATCH_ASSETS = [n for n, s in STAGES.items() if s.scope == "batch"]
curation_assets = [row_stage_asset(n) if s.row_wise else whole_stage_asset(n) for n, s in STAGES.items()]
