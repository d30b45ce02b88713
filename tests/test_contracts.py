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
