"""The MLflow model registry: every evaluated model a version, one ``champion``, and why.

``register`` packages a trained model (``model.pt``, its codec, its training config, the evaluation
and its report) as the artifacts ``model/`` of the evaluation's MLflow run, and makes it a version
of ``register.name`` with the alias ``challenger``. :func:`decide` compares it with the current
``champion`` on ``register.primary_metrics`` (each to maximise or minimise) and moves the alias
when the policy says so; the decision and its reason are tags on the version either way. The
champion's past holders are kept in the registered model's ``champion_history`` tag, which is
what ``rollback`` walks back along. Registering the same model file twice is a no-op.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vmas.config import Config, RegisterConfig
from vmas.errors import StageError
from vmas.io import atomic_write_json
from vmas.layout import EVALUATION_FILE, METRICS_FILE, MODEL_FILE, REPORT_FILE, model_path, registration_path
from vmas.tracking.runs import experiment_id, tracking_uri

if TYPE_CHECKING:
    from vmas.models.package import ModelPackage

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
HISTORY_TAG = "champion_history"
PACKAGE_FILE = "package.json"


class RegistryError(StageError):
    """A registry action that cannot be done (no such version, nothing to roll back to, ...)."""


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def decide(challenger: dict[str, float | None], champion: dict[str, float | None] | None,
           policy: RegisterConfig) -> Decision:
    """Whether ``challenger``'s metrics beat ``champion``'s under ``policy`` (pure; no MLflow).

    A metric improves when it is better by more than ``min_improvement`` x ``|champion value|``
    in its direction. ``require: all`` needs every primary metric to improve, ``any`` one of them.
    A challenger missing a primary metric is never promoted; with no champion it always is.
    """
    missing = [m for m in policy.primary_metrics if challenger.get(m) is None]
    if missing:
        return Decision(False, f"the challenger has no value for {', '.join(missing)}")
    if champion is None:
        return Decision(True, "no champion yet")
    parts, wins = [], []
    for name, direction in policy.primary_metrics.items():
        new, old = float(challenger[name]), champion.get(name)
        if old is None:
            parts.append(f"{name} {new:.4g} (champion has none)")
            wins.append(True)
            continue
        margin = policy.min_improvement * abs(old)
        better = new > old + margin if direction == "max" else new < old - margin
        wins.append(better)
        parts.append(f"{name} {new:.4g} {'beats' if better else 'does not beat'} {old:.4g} ({direction})")
    promote = all(wins) if policy.require == "all" else any(wins)
    return Decision(promote, f"{'; '.join(parts)} [require {policy.require}]")


def client(cfg: Config):
    from mlflow import MlflowClient

    uri = tracking_uri(cfg)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _metrics_of(version) -> dict[str, float]:
    return {k[len("metric."):]: float(v) for k, v in version.tags.items() if k.startswith("metric.")}


def _version_info(version, aliases: list[str]) -> dict:
    return {"version": int(version.version), "aliases": aliases, "metrics": _metrics_of(version),
            "run_id": version.run_id, "source": version.source, "model_sha256": version.tags.get("model_sha256"),
            "promotion": version.tags.get("promotion"), "created": version.creation_timestamp,
            "train_clips": int(version.tags["train_clips"]) if version.tags.get("train_clips", "").isdigit() else None}


def _aliases(c, name: str) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for alias, version in c.get_registered_model(name).aliases.items():
        out.setdefault(int(version), []).append(alias)
    return out


def _exists(c, name: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        c.get_registered_model(name)
        return True
    except MlflowException:
        return False


def champion(cfg: Config) -> dict | None:
    """The champion's ``{"version", "metrics", "run_id", "source", ...}``, or None when there is none."""
    from mlflow.exceptions import MlflowException

    c, name = client(cfg), cfg.register.name
    if not _exists(c, name):
        return None
    try:
        version = c.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None
    return _version_info(version, _aliases(c, name).get(int(version.version), []))


def versions(cfg: Config) -> list[dict]:
    """Every version of ``register.name``, newest first, with aliases, metrics and promotion notes."""
    c, name = client(cfg), cfg.register.name
    if not _exists(c, name):
        return []
    aliases = _aliases(c, name)
    found = c.search_model_versions(f"name = '{name}'")
    return sorted((_version_info(v, aliases.get(int(v.version), [])) for v in found), key=lambda v: -v["version"])


def _package(evaluation: dict, folder: Path) -> None:
    """``model.pt``, its codec, its training config and the evaluation, in ``folder`` (see PACKAGE_FILE)."""
    from vmas.models.package import trained_config  # torch: loaded when a model is packaged, not on import

    model = Path(evaluation["model"])
    codec = Path(evaluation["codec"])
    shutil.copy2(model, folder / MODEL_FILE)
    if codec.is_dir():
        shutil.copytree(codec, folder / "codec")
        codec_rel = "codec"
    else:
        (folder / "codec").mkdir()
        shutil.copy2(codec, folder / "codec" / codec.name)
        codec_rel = f"codec/{codec.name}"
    (folder / "config.yaml").write_text(trained_config(model).to_yaml())
    (folder / PACKAGE_FILE).write_text(json.dumps({"model": MODEL_FILE, "codec": codec_rel, "config": "config.yaml",
                                                   "model_sha256": evaluation["model_sha256"]}, indent=2))


def register(cfg: Config, evaluation: dict, evaluation_dir: str | Path) -> dict:
    """Register the evaluated model (idempotent), alias it ``challenger``, and promote it if it wins.

    ``evaluation`` is ``evaluation.json``'s content; its ``run_id`` (the evaluation's MLflow run)
    receives the package, so the version's run holds the metrics and the report. Returns
    ``{"version", "promoted", "reason", "champion", "new", "model_sha256"}``, also written to
    :func:`vmas.layout.registration_path`.
    """
    result = _register(cfg, evaluation, Path(evaluation_dir))
    atomic_write_json(registration_path(cfg), {**result, "name": cfg.register.name,
                                               "model_sha256": evaluation["model_sha256"]})
    return result


def _register(cfg: Config, evaluation: dict, evaluation_dir: Path) -> dict:
    c, name, sha = client(cfg), cfg.register.name, evaluation["model_sha256"]
    if not _exists(c, name):
        c.create_registered_model(name, description="VMAs video-to-music models (vmas register)")
    for v in c.search_model_versions(f"name = '{name}' and tag.model_sha256 = '{sha}'"):
        current = champion(cfg)
        log.info("register: model %s is already version %s of %s", sha[:12], v.version, name)
        return {"version": int(v.version), "promoted": current is not None and current["version"] == int(v.version),
                "reason": v.tags.get("promotion", ""), "champion": current and current["version"], "new": False}

    run_id = evaluation.get("run_id") or _new_run(c, cfg)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        folder.mkdir()
        _package(evaluation, folder)
        for f in (EVALUATION_FILE, METRICS_FILE, REPORT_FILE):
            if (evaluation_dir / f).is_file():
                shutil.copy2(evaluation_dir / f, folder / f)
        c.log_artifacts(run_id, str(folder), "model")
    source = f"{c.get_run(run_id).info.artifact_uri}/model"
    metrics = {k: v for k, v in evaluation["metrics"].items() if v is not None}
    trained_on = evaluation.get("trained_on") or {}
    tags = {"model_sha256": sha, "embedding": evaluation.get("embedding", ""), "clips": str(evaluation.get("clips")),
            "train_clips": str(trained_on.get("clips", "")), "train_fingerprint": trained_on.get("fingerprint", ""),
            **{f"metric.{k}": repr(float(v)) for k, v in metrics.items()}}
    version = c.create_model_version(name, source, run_id=run_id, tags=tags,
                                     description=f"evaluated on {evaluation.get('clips')} held-out clips")
    number = int(version.version)
    c.set_registered_model_alias(name, CHALLENGER, number)
    current = champion(cfg)
    decision = decide(evaluation["metrics"], current["metrics"] if current else None, cfg.register)
    if decision.promote:
        _set_champion(c, name, number, current)
    c.set_model_version_tag(name, number, "promotion", f"{'promoted' if decision.promote else 'not promoted'}: "
                            f"{decision.reason}")
    log.info("register: %s version %d (%s); %s", name, number, decision.reason,
             "now the champion" if decision.promote else f"champion stays version {current and current['version']}")
    return {"version": number, "promoted": decision.promote, "reason": decision.reason,
            "champion": number if decision.promote else (current and current["version"]), "new": True}


def _new_run(c, cfg: Config) -> str:
    run = c.create_run(experiment_id(c, cfg), tags={"stage": "register"}, run_name="register")
    c.set_terminated(run.info.run_id)
    return run.info.run_id


def _history(c, name: str) -> list[int]:
    return json.loads(c.get_registered_model(name).tags.get(HISTORY_TAG, "[]"))


def _set_champion(c, name: str, number: int, current: dict | None) -> None:
    if current is not None and current["version"] != number:
        c.set_registered_model_tag(name, HISTORY_TAG, json.dumps(_history(c, name) + [current["version"]]))
    c.set_registered_model_alias(name, CHAMPION, number)


def promote(cfg: Config, version: int, reason: str = "promoted by hand") -> dict:
    """Make ``version`` the champion regardless of the policy (the reason is recorded)."""
    c, name = client(cfg), cfg.register.name
    known = {v["version"] for v in versions(cfg)}
    if version not in known:
        raise RegistryError(f"{name} has no version {version} (versions: {sorted(known) or 'none'})")
    _set_champion(c, name, version, champion(cfg))
    c.set_model_version_tag(name, version, "promotion", f"promoted: {reason}")
    return {"version": version, "champion": version, "reason": reason}


def rollback(cfg: Config) -> dict:
    """Give ``champion`` back to the version that held it before the current one."""
    c, name = client(cfg), cfg.register.name
    history = _history(c, name) if _exists(c, name) else []
    current = champion(cfg)
    if not history or current is None:
        raise RegistryError(f"{name}: no earlier champion to roll back to")
    previous = history[-1]
    c.set_registered_model_alias(name, CHAMPION, previous)
    c.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history[:-1]))
    c.set_model_version_tag(name, current["version"], "promotion", f"rolled back to version {previous}")
    return {"version": previous, "champion": previous, "replaced": current["version"]}


def download(cfg: Config, uri: str | None = None, dst: str | Path | None = None) -> tuple[Path, Path]:
    """Fetch a registered model (``models:/<name>@champion`` by default) -> ``(model.pt, codec path)``."""
    import mlflow

    uri = uri or f"models:/{cfg.register.name}@{CHAMPION}"
    mlflow.set_tracking_uri(tracking_uri(cfg))
    mlflow.set_registry_uri(tracking_uri(cfg))
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst) if dst else None))
    info = json.loads((local / PACKAGE_FILE).read_text())
    return local / info["model"], local / info["codec"]


REMOTE_MODEL = ("models:/", "runs:/", "mlflow-artifacts:/")


def load_model(cfg: Config, model: str | None, device: str) -> tuple["ModelPackage", str]:
    """The model ``vmas generate`` uses. ``model``: a model.pt, a registered package folder, or an MLflow URI; None: the registry's champion
    (or, before anything is registered, the last trained model.pt). Returns the package and its name."""
    codec = None
    if model is None and champion(cfg) is None:
        if not model_path(cfg).is_file():
            raise StageError(f"no model: the registry has no {cfg.register.name}@champion and {model_path(cfg)} "
                             "does not exist; train one (`make demo`) or pass --model")
        log.warning("no champion in the registry yet: using %s (run `vmas evaluate` and `vmas register`)",
                    model_path(cfg))
        model = str(model_path(cfg))
    model = model or f"models:/{cfg.register.name}@{CHAMPION}"
    if model.startswith(REMOTE_MODEL):
        model_file, codec = download(cfg, model)
    elif Path(model).is_dir() and (Path(model) / PACKAGE_FILE).is_file():
        info = json.loads((Path(model) / PACKAGE_FILE).read_text())
        model_file, codec = Path(model) / info["model"], Path(model) / info["codec"]
    else:
        model_file = Path(model)
    from vmas.devices import resolve_dtype  # torch: `vmas registry show` and the schedule need none
    from vmas.models.package import load_model_package

    dtype = resolve_dtype(cfg.generate.precision, device)
    return load_model_package(model_file, codec, device=device, dtype=dtype), model
