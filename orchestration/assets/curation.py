"""Pipeline assets, one per stage in ``vmas.curation.STAGES``, with the registry's dependencies and titles.

Raw data arrive in batches: the new-video sensor registers each batch as a dynamic partition,
and materialising a partition runs each batch-scoped stage on that batch's videos only
(``run_stage(..., batch=)``); the manifests are shared, so earlier batches are never redone.
Dataset-scoped stages (``train_codec``: it reads every batch's clips) are unpartitioned.
"""

from pathlib import Path

import dagster as dg

from orchestration.assets.metadata import floats, image, link, tags
from orchestration.checks import suite_check_result, suite_check_spec
from orchestration.kubernetes_curation import step_tags
from orchestration.resources import MlflowTracking, VmasConfig
from vmas.curation import STAGES
from vmas.curation.batches import batch_video_ids
from vmas.layout import manifest_dir, output_dir
from vmas.quality.suites import SUITES
from vmas.stage import Stage

ingest_batches = dg.DynamicPartitionsDefinition(name="ingest_batches")

GROUP = "curation"


def _stage_metadata(report, cfg, stage: str) -> dict:
    from vmas.layout import manifest_dir

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
    return metadata


def _ingest_metadata(counts: dict, cfg, batch: str | None) -> tuple[dict, int]:
    rows = len(batch_video_ids(manifest_dir(cfg, "ingest"), batch))
    return {"rows": dg.MetadataValue.int(rows), "new": dg.MetadataValue.int(counts["new"]),
            "already known": dg.MetadataValue.int(counts["known"]),
            "duplicates": dg.MetadataValue.int(counts["duplicate"]),
            "unreadable": dg.MetadataValue.int(counts["unreadable"]),
            "data dir": dg.MetadataValue.path(str(Path(cfg.paths.data_dir).resolve()))}, rows


def _codec_metadata(report: dict, cfg, mlflow: MlflowTracking) -> dict:
    from vmas.codec.loading import resolve_codec_path

    metadata = {"codec": dg.MetadataValue.path(str(resolve_codec_path(cfg)))}
    if "metrics" not in report:
        metadata["pretrained"] = dg.MetadataValue.text(report.get("skipped", ""))
        return metadata
    metadata.update(floats(report["metrics"], "held-out "))
    metadata.update({"train clips": dg.MetadataValue.int(report["train_clips"]),
                     "steps": dg.MetadataValue.int(report["steps"])})
    link(metadata, "MLflow run", mlflow.run_url(cfg, report.get("run_id")))
    curves = output_dir(cfg, "train_codec") / "training_curves.png"
    if curves.is_file():
        metadata["training curves"] = image(curves)
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


def whole_stage_asset(name: str) -> dg.AssetsDefinition:
    """The asset of a stage that runs whole (``ingest``: this batch's new files; ``train_codec``; ``shard``)."""
    stage = STAGES[name]
    partitions = ingest_batches if stage.scope == "batch" else None

    @dg.asset(name=name, partitions_def=partitions, group_name=GROUP, deps=list(stage.needs),
              kinds={"parquet"} if stage.schema is not None else {"pytorch", "mlflow"},
              check_specs=[suite_check_spec(name, partitions)] if name in SUITES else None,
              description=_description(name, stage), op_tags=step_tags(name))
    def _asset(context: dg.AssetExecutionContext, vmas: VmasConfig, mlflow: MlflowTracking):
        from vmas.tracking.runs import mlflow_logger

        cfg = mlflow.apply(vmas.load())
        batch = context.partition_key if partitions is not None else None
        logger = mlflow_logger(cfg, name, {"stage": name, **tags(context)}) if stage.tracked(cfg) else None
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
        yield dg.MaterializeResult(metadata=metadata)
        if name in SUITES:
            yield suite_check_result(name, cfg, batch, rows)

    return _asset


def row_stage_asset(name: str) -> dg.AssetsDefinition:
    """The asset of a row-by-row stage: ``run_stage`` on this batch's videos."""
    stage = STAGES[name]

    @dg.asset(name=name, partitions_def=ingest_batches, group_name=GROUP, deps=list(stage.needs), kinds={"parquet"},
              check_specs=[suite_check_spec(name, ingest_batches)] if name in SUITES else None,
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
