"""Contracts between the library and the systems around it."""

import ast
from pathlib import Path

import vmas

ORCHESTRATION_PACKAGES = {"dagster", "dvc", "mlflow", "great_expectations", "kubernetes"}


def test_library_imports_no_orchestration():
    """src/vmas is a plain library: Dagster, DVC, MLflow, GX and Kubernetes wire it, never the reverse."""
    offenders = []
    for path in Path(vmas.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in ORCHESTRATION_PACKAGES]
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
