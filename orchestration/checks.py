"""Great Expectations suites as blocking Dagster asset checks.

Every stage with a suite (``vmas.quality.suites.SUITES``) gets one check, ``great_expectations``,
declared on its asset and evaluated by the asset right after it materialises. It is *blocking*:
when an expectation fails, Dagster marks the step failed and nothing downstream of the asset runs.
The check's metadata says which expectation failed, on how many rows, and names some of them.
"""

import warnings

import dagster as dg

from vmas.config import Config

CHECK = "great_expectations"


def suite_check_spec(stage: str, partitions_def: dg.PartitionsDefinition | None = None) -> dg.AssetCheckSpec:
    """The check of ``stage``; with ``partitions_def`` its results are kept per partition (per batch),
    a Dagster 1.13 feature still marked preview (hence the silenced warning)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=dg.PreviewWarning)
        return dg.AssetCheckSpec(CHECK, asset=stage, blocking=True, partitions_def=partitions_def,
                                 description=f"The {stage} Great Expectations suite over the stage's usable rows "
                                             f"(`vmas check {stage}`); blocks everything downstream when it fails.")


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

    outcome = check_stage(stage, cfg, batch)
    table = ["| expectation | result | failing rows | examples |", "| --- | --- | --- | --- |"]
    metadata: dict[str, dg.MetadataValue] = {"rows": dg.MetadataValue.int(outcome.rows)}
    for e in outcome.expectations:
        if e.success:
            result, failing = "passed", ""
        elif e.error:
            result, failing = f"could not run: {e.error}", ""
        else:
            result, failing = "FAILED", f"{e.unexpected_count} of {e.element_count}"
            metadata[f"failed: {e.name}"] = dg.MetadataValue.int(int(e.unexpected_count or 0))
        examples = ", ".join(str(x) for x in e.examples[:3]) if not e.success else ""
        table.append(f"| {e.name} | {result} | {failing} | {examples} |")
    metadata["expectations"] = dg.MetadataValue.md("\n".join(table))
    failed = [e.name for e in outcome.failures()]
    description = (f"{len(outcome.expectations)} expectations passed on {outcome.rows} rows" if not failed else
                   f"failed: {'; '.join(failed)}")
    return dg.AssetCheckResult(check_name=CHECK, passed=outcome.success, metadata=metadata, description=description,
                               severity=dg.AssetCheckSeverity.ERROR)
