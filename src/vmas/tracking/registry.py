"""The MLflow model registry: every evaluated model a version, one ``champion``, and why.

``register`` packages a trained model (``model.pt``, its codec, its training config, the evaluation
and its report), logs it as an MLflow pyfunc model of its training run (:mod:`vmas.tracking.pyfunc`:
``mlflow.pyfunc.load_model("models:/vmas@champion").predict`` gives a video music, ``mlflow models
serve`` serves it), and makes it a version of ``register.name`` with the alias ``challenger``; the
version's run is the evaluation's, whose metrics are linked to the logged model. :func:`decide`
compares it with the current ``champion`` on ``register.primary_metrics`` (each to maximise or
minimise) and moves the alias when the policy says so; the decision and its reason are tags on the
version either way. The champion's past holders are kept in the registered model's
``champion_history`` tag, which is what ``rollback`` walks back along. Registering the same model
file twice is a no-op. A version registered before the pyfunc model (a ``model/`` folder of the
evaluation's run) still downloads and loads (:func:`package_folder`).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from contextlib import contextmanager
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
    """What :func:`champion` and :func:`versions` say of a version: ``run_id`` is the evaluation's run (the
    metrics and the report), ``training_run_id`` the run the model was logged from (``model_id``)."""
    return {"version": int(version.version), "aliases": aliases, "metrics": _metrics_of(version),
            "run_id": version.run_id, "source": version.source, "model_sha256": version.tags.get("model_sha256"),
            "model_id": _model_id(version), "training_run_id": version.tags.get("training_run_id") or None,
            "promotion": version.tags.get("promotion"), "created": version.creation_timestamp,
            "train_clips": int(version.tags["train_clips"]) if version.tags.get("train_clips", "").isdigit() else None}


def _model_id(version) -> str | None:
    """The LoggedModel a version was made from: its source ``models:/<model id>`` (the SQL registry keeps no
    ``model_id`` of its own); None for a version registered before the pyfunc model (a run's folder)."""
    if getattr(version, "model_id", None):
        return version.model_id
    source = version.source or ""
    return source[len("models:/"):] if source.startswith("models:/m-") else None


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

    ``evaluation`` is ``evaluation.json``'s content. The package is logged as an MLflow model of its
    training run (the ``vmas train`` run tagged with its ``model_sha256``; the evaluation's run, or a new
    ``register`` run, when it was trained untracked); the version's run is the evaluation's ``run_id``, so it
    holds the metrics and the report, and those metrics are linked to the logged model. Returns
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

    from mlflow.entities import Metric

    training_run = _training_run(c, cfg, sha)
    run_id = evaluation.get("run_id") or training_run or _new_run(c, cfg)
    metrics = {k: float(v) for k, v in evaluation["metrics"].items() if v is not None}
    model_id = _log_model(c, cfg, evaluation, evaluation_dir, training_run or run_id)
    if evaluation.get("run_id"):  # the evaluation's metrics, linked to the logged model
        stamp = int(time.time() * 1000)
        c.log_batch(run_id, metrics=[Metric(k, v, stamp, 0, model_id=model_id) for k, v in metrics.items()])
    trained_on = evaluation.get("trained_on") or {}
    tags = {"model_sha256": sha, "embedding": evaluation.get("embedding", ""), "clips": str(evaluation.get("clips")),
            "train_clips": str(trained_on.get("clips", "")), "train_fingerprint": trained_on.get("fingerprint", ""),
            "training_run_id": training_run or "", **{f"metric.{k}": repr(v) for k, v in metrics.items()}}
    with _tracking(cfg):  # the SQL registry resolves models:/<model id> through the global tracking URI
        version = c.create_model_version(name, f"models:/{model_id}", run_id=run_id, tags=tags, model_id=model_id,
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


def _training_run(c, cfg: Config, sha: str) -> str | None:
    """The newest ``vmas train`` run of ``tracking.experiment`` that wrote the model file ``sha`` (its
    ``model_sha256`` tag), or None (trained untracked)."""
    found = c.search_runs([experiment_id(c, cfg)], max_results=1, order_by=["attributes.start_time DESC"],
                          filter_string=f"tags.model_sha256 = '{sha}' and tags.stage = 'train'")
    return found[0].info.run_id if found else None


def _log_model(c, cfg: Config, evaluation: dict, evaluation_dir: Path, run_id: str) -> str:
    """The package (see :func:`_package`, plus the evaluation's files) logged as the MLflow pyfunc model
    ``register.name`` of the run ``run_id``; returns its model id."""
    from vmas.tracking.pyfunc import log_music_model

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "package"
        folder.mkdir()
        _package(evaluation, folder)
        for f in (EVALUATION_FILE, METRICS_FILE, REPORT_FILE):
            if (evaluation_dir / f).is_file():
                shutil.copy2(evaluation_dir / f, folder / f)
        started = time.perf_counter()
        model_id = log_music_model(c, folder, run_id, c.get_run(run_id).info.experiment_id, cfg.register.name,
                                   cfg.generate.model_dump(mode="json"), {"model_sha256": evaluation["model_sha256"]})
    log.info("register: logged %s as MLflow model %s of run %s in %.1f s", evaluation["model"], model_id, run_id,
             time.perf_counter() - started)
    return model_id


@contextmanager
def _tracking(cfg: Config):
    """MLflow's global tracking and registry URIs set to ``cfg``'s for the block (``models:/`` URIs resolve there)."""
    import mlflow

    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(tracking_uri(cfg))
    mlflow.set_registry_uri(tracking_uri(cfg))
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before[0])
        mlflow.set_registry_uri(before[1])


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


def package_folder(folder: Path) -> Path | None:
    """The package inside ``folder``: ``folder`` itself when it holds ``package.json`` (a package, or a version
    registered before the pyfunc model), ``artifacts/package`` of an MLflow model folder; else None."""
    from vmas.tracking.pyfunc import PACKAGE_ARTIFACT

    for candidate in (folder, folder / "artifacts" / PACKAGE_ARTIFACT):
        if (candidate / PACKAGE_FILE).is_file():
            return candidate
    return None


def package_files(folder: Path) -> tuple[Path, Path]:
    """``(model.pt, codec path)`` of the package in ``folder`` (see :func:`package_folder`)."""
    found = package_folder(Path(folder))
    if found is None:
        raise RegistryError(f"{folder}: no {PACKAGE_FILE} in it or in its artifacts/ (not a registered vmas model)")
    info = json.loads((found / PACKAGE_FILE).read_text())
    return found / info["model"], found / info["codec"]


def download(cfg: Config, uri: str | None = None, dst: str | Path | None = None) -> tuple[Path, Path]:
    """Fetch a registered model (``models:/<name>@champion`` by default) -> ``(model.pt, codec path)``."""
    import mlflow

    uri = uri or f"models:/{cfg.register.name}@{CHAMPION}"
    with _tracking(cfg):
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst) if dst else None))
    return package_files(local)


REMOTE_MODEL = ("models:/", "runs:/", "mlflow-artifacts:/")


def load_model(cfg: Config, model: str | None, device: str) -> tuple["ModelPackage", str]:
    """The model ``vmas generate`` uses. ``model``: a model.pt, a registered package folder (or a downloaded MLflow
    model holding one), or an MLflow URI; None: the registry's champion (or, before anything is registered, the
    last trained model.pt). Returns the package and its name."""
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
    elif Path(model).is_dir() and package_folder(Path(model)) is not None:
        model_file, codec = package_files(Path(model))
    else:
        model_file = Path(model)
    from vmas.devices import resolve_dtype  # torch: `vmas registry show` and the schedule need none
    from vmas.models.package import load_model_package

    dtype = resolve_dtype(cfg.generate.precision, device)
    return load_model_package(model_file, codec, device=device, dtype=dtype), model
