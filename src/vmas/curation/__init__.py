"""The data pipeline's stages (DISCO-MV curation, the codec, tokenize, then shard), in order: the one registry.

``STAGES`` is what the CLI commands, the Dagster assets and their dependencies, ``materialize``'s run
order, ``vmas curate`` and the ``dvc.yaml`` contract check are derived from. A stage's name is used
unchanged everywhere (module, function, params key, DVC stage, asset, GX suite, CLI command). Each
is a :class:`~vmas.stage.Stage`: row by row over its upstream manifest, or whole.
"""

from vmas.codec import train_codec
from vmas.curation import beats, clip, download, filter_static, ingest, probe, remove_vocals, shard, tokenize
from vmas.stage import Stage

STAGES: dict[str, Stage] = {m.STAGE.name: m.STAGE for m in (ingest, download, probe, filter_static, remove_vocals,
                                                            clip, beats, train_codec, tokenize, shard)}


def _check(stages: dict[str, Stage]) -> None:
    """Each stage comes after everything it needs (so running them in order is a valid schedule)."""
    seen: set[str] = set()
    for name, stage in stages.items():
        missing = [n for n in stage.needs if n not in seen]
        if missing:
            raise AssertionError(f"stage {name} needs {missing}, which do not come before it in STAGES")
        seen.add(name)


_check(STAGES)

__all__ = ["STAGES", "Stage"]
