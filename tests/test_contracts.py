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
        module = (stage.process or stage.run).__module__
        assert module.rsplit(".", 1)[1] == name and importlib.import_module(module).STAGE is stage
        assert name in commands, name
        assert all(n in STAGES for n in stage.needs) and stage.title
    assert list(STAGES) == ["ingest", "download", "probe", "filter_static", "remove_vocals", "clip", "beats",
                            "train_codec", "tokenize", "shard"]


MODEL_STAGES = ["train", "evaluate", "register"]


def test_dvc_stages_dagster_assets_and_suites_share_one_name_per_stage(repo):
    """dvc.yaml, the Dagster assets and the GX suites are the same stages under the same names, and
    every stage with a suite runs it: in dvc.yaml after the command, in Dagster as a blocking check."""
    import gc

    import dagster as dg
    import yaml

    from orchestration.checks import CHECK, CODEC_GATE
    from orchestration.definitions import defs
    from vmas.config import Config
    from vmas.quality.suites import SUITES

    from vmas.curation import STAGES

    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    assert list(stages) == [*STAGES, *MODEL_STAGES, "generate"]  # as the Dagster assets below
    for name, stage in STAGES.items():  # DVC runs each after what the registry says it needs, and on its code
        deps = stages[name].get("deps", [])
        for need in stage.needs:
            assert {f"${{paths.artifacts_dir}}/manifests/{need}", f"${{paths.artifacts_dir}}/{need}"} & set(deps), \
                (name, need)
        source = "src/" + (stage.process or stage.run).__module__.replace(".", "/") + ".py"
        assert any(source.startswith(d) for d in deps), (name, source)
    for name, stage in stages.items():
        assert stage["cmd"].startswith(f"vmas {name}"), name
        assert (f"vmas check {name}" in stage["cmd"]) == (name in SUITES), name
        for param in stage.get("params", []):
            assert param.split(".")[0] in Config.model_fields, (name, param)  # a params.yaml section
    gc.collect()  # an instance an earlier test left entered may leave its dead state storage current when collected
    with dg.DagsterInstance.ephemeral():  # resolve with a live one, whatever ran before
        graph = defs.resolve_asset_graph()
    assert [k.to_user_string() for k in graph.toposorted_asset_keys] == [*STAGES, *MODEL_STAGES, "generate"]
    for name, stage in STAGES.items():  # the assets depend on what the registry says
        assert {k.to_user_string() for k in graph.get(dg.AssetKey(name)).parent_keys} == set(stage.needs), name
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert checks == {(name, CHECK) for name in SUITES} | {("train_codec", CODEC_GATE)}
    assert all(graph.get_check_spec(k).blocking for k in graph.asset_check_keys)


def test_orchestration_only_wires_the_library(repo):
    """orchestration/ holds no ML: it imports the vmas library (lazily), never torch and friends itself."""
    ml = {"torch", "lightning", "numpy", "librosa", "audiocraft", "demucs", "decord", "cv2"}
    offenders = [f"{p.relative_to(repo)}: {n}" for p in (repo / "orchestration").rglob("*.py") for n in _imports(p)
                 if n.split(".")[0] in ml]
    assert not offenders


def _package_imports() -> dict[str, dict[str, list[str]]]:
    """``{importing module: {imported vmas module: [names]}}`` for every import in src/vmas, at any depth
    (function-local imports included: they are edges of the graph too)."""
    root = Path(vmas.__file__).parent
    graph: dict[str, dict[str, list[str]]] = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        me = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        edges = graph.setdefault(me, {})
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vmas") and not node.level:
                edges.setdefault(node.module, []).extend(a.name for a in node.names)
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("vmas"):
                        edges.setdefault(a.name, [])
    return graph


def _package(module: str) -> str:
    """``vmas.curation.beats`` -> ``curation``; top-level modules (``vmas.layout``) are their own package."""
    return module.split(".")[1] if "." in module else module


def test_the_packages_of_src_vmas_import_each_other_without_a_cycle():
    """The packages form layers: no import (even inside a function) runs back up.

    A cycle between two packages means a helper lives in the wrong one (it was ``codec`` <->
    ``curation`` for ``StageError``, ``evaluation`` <-> ``generation`` for sampling and motion).
    Top-level modules (``vmas.layout``, ``vmas.io``, ...) count as packages of their own.
    """
    edges: dict[str, set[str]] = {}
    for module, imported in _package_imports().items():
        for target in imported:
            if _package(module) != _package(target):
                edges.setdefault(_package(module), set()).add(_package(target))

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            for nxt in edges.get(todo.pop(), ()):
                if nxt == goal:
                    return True
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return False

    cycles = sorted({tuple(sorted((a, b))) for a, targets in edges.items() for b in targets if reaches(b, a)})
    assert not cycles, f"package import cycles: {cycles}"


def test_nothing_imports_a_stage_module_for_a_general_helper(repo):
    """A stage module is imported only for its stage: its entry function (or ``STAGE``).

    Helpers that several parts use (paths, hashes, devices, motion, batches, errors) live in shared
    modules (``vmas.layout``, ``vmas.io``, ``vmas.devices``, ``vmas.media``, ``vmas.curation.batches``,
    ``vmas.errors``), so no stage reaches into another for them. Checked for src/vmas and orchestration/.
    """
    from vmas.curation import STAGES

    entry = {(s.process or s.run).__module__: {name, "STAGE"} for name, s in STAGES.items()}
    entry |= {"vmas.training.train": {"train"}, "vmas.evaluation.evaluate": {"evaluate"}}
    entry["vmas.curation.ingest"].add("ingest")  # the function behind `vmas ingest FOLDER --manifest ...`
    offenders = []
    sources = [*Path(vmas.__file__).parent.rglob("*.py"), *(repo / "orchestration").rglob("*.py")]
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module in entry and path.stem != node.module.rsplit(".", 1)[1]:
                extra = {a.name for a in node.names} - entry[node.module]
                if extra:
                    offenders.append(f"{path.name} imports {sorted(extra)} from the stage module {node.module}")
    assert not offenders
