"""Dataset stages (DISCO-MV curation, then tokenize): each a plain function over a manifest row, in order.

``STAGES`` is the one registry the CLI, DVC and Dagster are generated from; the names are used
unchanged everywhere (module, function, params key, DVC stage, asset, GX suite, CLI command).
"""

from vmas.curation import beats, clip, filter_static, ingest, probe, remove_vocals, tokenize
from vmas.curation.stage import Stage

STAGES: dict[str, Stage] = {m.STAGE.name: m.STAGE for m in (ingest, probe, filter_static, remove_vocals, clip, beats, tokenize)}

__all__ = ["STAGES", "Stage"]
