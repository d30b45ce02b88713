"""What starts runs by itself: new videos start curation (a sensor), and retraining runs on a cron
when enough new curated data has arrived (a schedule). Both need the Dagster daemon
(``dagster dev`` runs one) and are switched on in the UI, under Automation.
"""

from pathlib import Path

import dagster as dg

from orchestration.assets.curation import BATCH_ASSETS, ingest_batches
from orchestration.resources import VmasConfig

RETRAIN_ASSETS = ["shard", "train", "evaluate", "register"]  # shard: the new clips into the shards


@dg.sensor(name="new_videos", target=dg.AssetSelection.assets(*BATCH_ASSETS), minimum_interval_seconds=60,
           description="New video files under paths.data_dir (for example after `dvc pull` of a changed data.dvc) "
                       "become an ingest batch: a new partition of the curation assets, and a run that curates it. "
                       "Batches ingested outside Dagster (`vmas ingest --disco`, `dvc repro`) become partitions too, "
                       "each its own run (queued: the run coordinator bounds how many run at once). The codec, "
                       "trained on every batch's clips, is not part of these runs.")
def new_videos(context: dg.SensorEvaluationContext, vmas: VmasConfig):
    from vmas.curation.batches import batch_name, batches, unregistered_files
    from vmas.layout import manifest_dir
    from vmas.run_logging import dvc_data_version

    cfg = vmas.load()
    ingest_root = manifest_dir(cfg, "ingest")
    known = set(context.instance.get_dynamic_partitions(ingest_batches.name))
    ingested = [b for b in batches(ingest_root) if b not in known]
    files = unregistered_files(cfg, ingest_root)
    new = batch_name(files) if files else None
    if new in known:
        new = None  # polled before: its run is on its way
    if not ingested and new is None:
        return dg.SkipReason(f"no new videos under {Path(cfg.paths.data_dir).resolve()}"
                             + (f" ({len(files)} already named a batch, waiting for its run)" if files else ""))
    tags = {"vmas/data_dvc_md5": dvc_data_version() or ""}
    requests = [dg.RunRequest(run_key=b, partition_key=b, tags={**tags, "vmas/source": "ingested"}) for b in ingested]
    if new is not None:
        context.log.info("%d new videos under %s: batch %s", len(files), cfg.paths.data_dir, new)
        requests.append(dg.RunRequest(run_key=new, partition_key=new, tags={**tags, "vmas/new_videos": str(len(files))}))
    return dg.SensorResult(run_requests=requests,
                           dynamic_partitions_requests=[ingest_batches.build_add_request([r.partition_key
                                                                                          for r in requests])])


def retrain_schedule(cron: str) -> dg.ScheduleDefinition:
    """Re-shard, retrain, evaluate and register on ``cron`` (UTC), when ``retraining_decision`` says it is due."""

    @dg.schedule(name="retrain", cron_schedule=cron, execution_timezone="UTC",
                 target=dg.AssetSelection.assets(*RETRAIN_ASSETS),
                 description="Re-shard, retrain, evaluate and register when at least retrain.min_new_clips usable clips "
                             "arrived since the champion's training data.")
    def retrain(context: dg.ScheduleEvaluationContext, vmas: VmasConfig):
        from vmas.training.retrain import retraining_decision

        decision = retraining_decision(vmas.load())
        if not decision.due:
            return dg.SkipReason(decision.reason)
        return dg.RunRequest(run_key=f"retrain-{decision.data_key}",
                             tags={"vmas/clips": str(decision.clips), "vmas/reason": decision.reason[:200]})

    return retrain
