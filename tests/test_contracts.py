"""Contracts between the library and the systems around it."""

import ast
from pathlib import Path

import vmas

ORCHESTRATION_PACKAGES = {"dagster", "dvc", "mlflow", "great_expectations", "kubernetes"}


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append(node.module or "")
    return names


def test_library_imports_no_orchestration():
    """src/vmas is a plain library: Dagster, DVC, MLflow, GX and Kubernetes wire it, never the reverse.

    The exceptions are the two adapters: ``vmas.tracking`` (MLflow runs and the model registry) and
    ``vmas.quality`` (the Great Expectations suites).
    """
    root = Path(vmas.__file__).parent
    adapters = {"tracking": {"mlflow"}, "quality": {"great_expectations"}}
    offenders = []
    for path in root.rglob("*.py"):
        allowed = adapters.get(path.relative_to(root).parts[0], set())
        offenders += [f"{path.relative_to(root)}: {n}" for n in _imports(path)
                      if n.split(".")[0] in ORCHESTRATION_PACKAGES - allowed]
    assert not offenders


def test_every_stage_is_named_the_same_in_module_registry_and_cli():
    """One name per stage: the module, the STAGES key, the CLI command and the manifest folder."""
    import importlib

    import typer.main

    from vmas.cli.main import app
    from vmas.curation import STAGES

    commands = {c.name for c in typer.main.get_command(app).commands.values()}
    for name, stage in STAGES.items():
        assert stage.name == name
        assert importlib.import_module(f"vmas.curation.{name}").STAGE is stage
        assert name in commands, name
        assert stage.upstream is None or stage.upstream in STAGES
    assert list(STAGES) == ["ingest", "probe", "filter_static", "remove_vocals", "clip", "beats", "tokenize"]
