"""Materialise the whole asset graph from the command line (what ``make demo`` runs):
``python -m orchestration.materialize``.

New videos under ``paths.data_dir`` become a batch, exactly as the ``new_videos`` sensor would
register them; each new batch is then curated and everything downstream (codec, tokens, model,
evaluation, registration, the demo video) materialised, with every blocking check (see
:func:`materialize_all` for the runs). With no new videos, the newest batch is materialised again
(stages skip what is done). Runs are recorded in the Dagster instance at ``$DAGSTER_HOME``
(default ``./.dagster``), so ``dagster dev`` shows them afterwards.
"""

import argparse
import os
import sys
from pathlib import Path

import dagster as dg

from orchestration.assets.curation import ingest_batches
from orchestration.automation import new_videos
from vmas.curation import STAGES


def dagster_home() -> Path:
    """``$DAGSTER_HOME``, else ``./.dagster`` (set in the environment, for Dagster and for ``dagster dev``),
    with a ``dagster.yaml`` that turns telemetry off."""
    home = Path(os.environ.get("DAGSTER_HOME") or Path.cwd() / ".dagster").resolve()
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").is_file():
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def batches_to_run(instance: dg.DagsterInstance, defs: dg.Definitions) -> list[str]:
    """Register new videos as a batch (the sensor's own evaluation) and return the batches to run."""
    result = new_videos(dg.build_sensor_context(instance=instance, definitions=defs,
                                                resources={"vmas": defs.resources["vmas"]}))
    if isinstance(result, dg.SensorResult) and result.run_requests:
        for request in result.dynamic_partitions_requests or []:
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        return [r.partition_key for r in result.run_requests]
    known = instance.get_dynamic_partitions(ingest_batches.name)
    return known[-1:]


def stage_runs() -> list[tuple[str, list[str]]]:
    """``STAGES`` cut into runs: consecutive stages of one scope go together, as ``("batch", [...])`` (run per
    ingest batch) or ``("dataset", [...])`` (run once over every batch)."""
    runs: list[tuple[str, list[str]]] = []
    for name, stage in STAGES.items():
        if runs and runs[-1][0] == stage.scope:
            runs[-1][1].append(name)
        else:
            runs.append((stage.scope, [name]))
    return runs


def materialize_all(instance: dg.DagsterInstance, defs: dg.Definitions, log_level: str = "INFO") -> list:
    """Every asset and check, in runs that keep the codec and the tokens consistent; returns the results.

    The stages run in the registry's order, cut by scope (:func:`stage_runs`):

    1. each new batch: the batch stages up to the first dataset stage (``ingest`` to ``beats``);
    2. a dataset stage once (``train_codec``: it reads every batch's clips, so new clips may give a new codec);
    3. the batch stages after it for every partition: new batches, and old ones again, whose results
       may depend on the dataset stage (``tokenize``, if the codec changed; otherwise each is already
       done and costs a moment);
    4. the next dataset stage once (``shard``: its train/validation split is over every batch's videos);
    5. ``train``, ``evaluate``, ``register`` and ``generate``.

    Stops at the first failed run (a blocking check failing, for instance).
    """
    job = defs.resolve_implicit_global_asset_job_def()
    results: list = []

    def run(assets: list[str], partition: str | None = None) -> bool:
        subset = job.get_subset(asset_selection={dg.AssetKey(a) for a in assets})
        results.append(subset.execute_in_process(
            instance=instance, partition_key=partition, raise_on_error=False, tags={"vmas/source": "materialize"},
            run_config={"loggers": {"console": {"config": {"log_level": log_level}}}}))
        return results[-1].success

    batches = batches_to_run(instance, defs)
    if not batches:
        return results
    after_dataset = False  # a batch run after a dataset stage covers every batch
    for scope, names in stage_runs():
        if scope == "dataset":
            ok = run(names)
            after_dataset = True
        else:
            partitions = instance.get_dynamic_partitions(ingest_batches.name) if after_dataset else batches
            ok = all(run(names, batch) for batch in partitions)
        if not ok:
            return results
    run(["train", "evaluate", "register", "generate"])
    return results


def describe(results: list, defs: dg.Definitions) -> list[str]:
    """A line per asset, in pipeline order: materialised (in how many runs) or not, and its last check."""
    done: dict[str, int] = {}
    checks, failed = {}, set()
    for result in results:
        for e in result.get_asset_materialization_events():
            done[e.asset_key.to_user_string()] = done.get(e.asset_key.to_user_string(), 0) + 1
        checks.update({e.asset_key.to_user_string(): e for e in result.get_asset_check_evaluations()})
        failed |= {e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"}
    lines = []
    for name in (key.to_user_string() for key in defs.resolve_asset_graph().toposorted_asset_keys):
        check = checks.get(name)
        state = (f"materialised{f' ({done[name]} batches)' if done.get(name, 0) > 1 else ''}" if name in done
                 else "FAILED" if name in failed else "not run (upstream failed)")
        verdict = "" if check is None else f"  check: {'passed' if check.passed else 'FAILED'} ({check.description})"
        lines.append(f"  {name:14s} {state}{verdict}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--log-level", default="WARNING", help="Dagster's console log level (DEBUG shows every event).")
    args = parser.parse_args(argv)
    home = dagster_home()
    from orchestration.definitions import defs

    with dg.DagsterInstance.get() as instance:
        results = materialize_all(instance, defs, args.log_level)
        if not results:
            print("no batches: no videos under the data folder", file=sys.stderr)
            return 1
        for result in results:
            batch = result.dagster_run.tags.get("dagster/partition")
            print(f"run {result.run_id}{f' (batch {batch})' if batch else ''}: "
                  f"{'success' if result.success else 'FAILED'}")
        print("\n".join(describe(results, defs)))
    print(f"Dagster UI: DAGSTER_HOME={home} dagster dev   (runs, asset lineage, check results)")
    return 0 if all(r.success for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
