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


DVC_STAGES = ["ingest", "probe", "filter_static", "remove_vocals", "clip", "beats", "train_codec", "tokenize", "train",
              "evaluate", "register"]


def test_dvc_stages_dagster_assets_and_suites_share_one_name_per_stage(repo):
    """dvc.yaml, the Dagster assets and the GX suites are the same stages under the same names, and
    every stage with a suite runs it: in dvc.yaml after the command, in Dagster as a blocking check."""
    import yaml

    from orchestration.checks import CHECK
    from orchestration.definitions import defs
    from vmas.config import Config
    from vmas.quality.suites import SUITES

    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    assert list(stages) == DVC_STAGES
    for name, stage in stages.items():
        assert stage["cmd"].startswith(f"vmas {name}"), name
        assert (f"vmas check {name}" in stage["cmd"]) == (name in SUITES), name
        for param in stage.get("params", []):
            assert param.split(".")[0] in Config.model_fields, (name, param)  # a params.yaml section
    graph = defs.resolve_asset_graph()
    assert [k.to_user_string() for k in graph.toposorted_asset_keys] == [*DVC_STAGES, "generate"]
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert checks == {(name, CHECK) for name in SUITES}
    assert all(graph.get_check_spec(k).blocking for k in graph.asset_check_keys)


def test_orchestration_only_wires_the_library(repo):
    """orchestration/ holds no ML: it imports the vmas library (lazily), never torch and friends itself."""
    ml = {"torch", "lightning", "numpy", "librosa", "audiocraft", "demucs", "decord", "cv2"}
    offenders = [f"{p.relative_to(repo)}: {n}" for p in (repo / "orchestration").rglob("*.py") for n in _imports(p)
                 if n.split(".")[0] in ml]
    assert not offenders
