"""Curation assets, one per stage in ``vmas.curation.STAGES``, partitioned by ingest batch.

Raw data arrive in batches: the new-video sensor registers each batch as a dynamic partition,
and materialising a partition runs each stage on that batch's videos only (``run_stage(...,
batch=)``); the manifests are shared, so earlier batches are never redone.
"""

from pathlib import Path

import dagster as dg

from orchestration.checks import suite_check_result, suite_check_spec
from orchestration.resources import VmasConfig
from vmas.curation import STAGES
from vmas.quality.suites import SUITES

ingest_batches = dg.DynamicPartitionsDefinition(name="ingest_batches")

GROUP = "curation"
# what each stage's asset is, in the words of the pipeline (raw videos -> probed -> filtered -> ...)
TITLES = {"ingest": "raw videos", "probe": "probed videos", "filter_static": "dynamic videos (static ones dropped)",
          "remove_vocals": "instrumentals", "clip": "clips", "beats": "beat weights", "tokenize": "training tokens"}


def _stage_metadata(report, cfg, stage: str) -> dict:
    from vmas.curation.runner import manifest_dir

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


def ingest_asset() -> dg.AssetsDefinition:
    @dg.asset(name="ingest", partitions_def=ingest_batches, group_name=GROUP, kinds={"parquet"},
              check_specs=[suite_check_spec("ingest", ingest_batches)],
              description="Raw videos: new files under paths.data_dir registered by content hash as this batch.")
    def ingest(context: dg.AssetExecutionContext, vmas: VmasConfig):
        from vmas.curation.ingest import batch_video_ids, ingest as ingest_videos
        from vmas.curation.runner import manifest_dir

        cfg = vmas.load()
        batch = context.partition_key
        counts = ingest_videos(cfg, manifest_dir(cfg, "ingest"), [Path(cfg.paths.data_dir)], batch=batch,
                               progress=False)
        rows = len(batch_video_ids(manifest_dir(cfg, "ingest"), batch))
        context.log.info("ingest %s: %d new videos (%d in the batch), %d already known, %d duplicates", batch,
                         counts["new"], rows, counts["known"], counts["duplicate"])
        yield dg.MaterializeResult(metadata={
            "rows": dg.MetadataValue.int(rows), "new": dg.MetadataValue.int(counts["new"]),
            "already known": dg.MetadataValue.int(counts["known"]),
            "duplicates": dg.MetadataValue.int(counts["duplicate"]),
            "unreadable": dg.MetadataValue.int(counts["unreadable"]),
            "data dir": dg.MetadataValue.path(str(Path(cfg.paths.data_dir).resolve()))})
        yield suite_check_result("ingest", cfg, batch, rows)

    return ingest


def row_stage_asset(name: str) -> dg.AssetsDefinition:
    stage = STAGES[name]
    deps = [stage.upstream] + (["train_codec"] if name == "tokenize" else [])

    @dg.asset(name=name, partitions_def=ingest_batches, group_name=GROUP, deps=deps, kinds={"parquet"},
              check_specs=[suite_check_spec(name, ingest_batches)] if name in SUITES else None,
              description=f"{TITLES[name][:1].upper()}{TITLES[name][1:]}: {stage.description} "
                          f"(`vmas {name}`, on this batch's videos).")
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


curation_assets = [ingest_asset(), *(row_stage_asset(n) for n, s in STAGES.items() if s.process is not None)]
