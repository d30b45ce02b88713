"""A trained model as one loadable thing: weights, the config they were trained with, and their codec.

``vmas train`` writes ``model.pt`` = ``{"state_dict", "config", "codec", "codec_sha256"}``; the
registry packages the same file with the codec beside it. :func:`load_model_package` rebuilds the
network from the stored config (never from the current one, which may have changed since) and
checks that the codec is the one the model was trained on.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from vmas.codec import Codec, load_codec
from vmas.config import Config
from vmas.curation.stage import StageError
from vmas.curation.tokenize import file_sha256
from vmas.models.builders import build_vmas
from vmas.models.vmas import VMAs

log = logging.getLogger(__name__)


class ModelPackageError(StageError):
    """A model file that cannot be used (missing, malformed, or paired with the wrong codec)."""


@dataclass
class ModelPackage:
    model: VMAs  # eval mode, on ``device``
    codec: Codec
    config: Config  # the training config
    path: Path
    sha256: str  # of the model file: names this exact model in reports and the registry
    codec_path: Path
    trained_on: dict | None = None  # {"clips", "fingerprint"} of its training data (None: an older file)


def resolve_dtype(precision: str, device: str) -> torch.dtype:
    """``auto`` -> bfloat16 on a CUDA device that supports it, else float32."""
    if precision == "bf16" or (precision == "auto" and device.startswith("cuda") and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float32


def load_model_package(path: str | Path, codec_path: str | Path | None = None, device: str = "cpu",
                       dtype: torch.dtype = torch.float32) -> ModelPackage:
    """Load ``model.pt`` (or a folder holding it) and its codec (``codec_path``, else the path it records).

    ``dtype`` is the network's (bf16 halves memory and speeds up GPUs); the codec stays float32.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    if not path.is_file():
        raise ModelPackageError(f"{path}: no model file (run `vmas train`, or give a registered model)")
    try:
        package = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means the same thing here
        raise ModelPackageError(f"{path}: not a vmas model file ({type(exc).__name__}: {exc})") from None
    if not isinstance(package, dict) or not {"state_dict", "config", "codec"} <= set(package):
        raise ModelPackageError(f"{path}: not a vmas model file (expected state_dict, config and codec entries)")
    cfg = Config.model_validate(package["config"])
    codec_file = Path(codec_path) if codec_path is not None else Path(package["codec"])
    if not codec_file.exists():
        raise ModelPackageError(f"{path}: its codec {codec_file} does not exist")
    expected = package.get("codec_sha256")
    if expected and file_sha256(codec_file) != expected:
        raise ModelPackageError(f"{path}: the codec {codec_file} is not the one this model was trained with "
                                f"(sha256 {expected[:12]}...)")
    codec = load_codec(codec_file, device=device)
    model = build_vmas(cfg, codec.codebook_embeddings().cpu(), load_pretrained=False)
    model.load_state_dict(package["state_dict"])
    model = model.to(device=device, dtype=dtype).eval()
    log.info("loaded %s (%d parameters, codec %s)", path, sum(p.numel() for p in model.parameters()), codec_file)
    return ModelPackage(model, codec, cfg, path, file_sha256(path), codec_file, package.get("trained_on"))


REMOTE_MODEL = ("models:/", "runs:/", "mlflow-artifacts:/")


def load_model(cfg: Config, model: str | None, device: str) -> tuple[ModelPackage, str]:
    """``model``: a model.pt, a registered package folder, or an MLflow URI; None: the registry's champion
    (or, before anything is registered, the last trained model.pt). Returns the package and its name."""
    from vmas.tracking import registry
    from vmas.training.train import model_path

    codec = None
    if model is None and registry.champion(cfg) is None:
        if not model_path(cfg).is_file():
            raise StageError(f"no model: the registry has no {cfg.registry.name}@champion and {model_path(cfg)} "
                             "does not exist; train one (`make demo`) or pass --model")
        log.warning("no champion in the registry yet: using %s (run `vmas evaluate` and `vmas register`)",
                    model_path(cfg))
        model = str(model_path(cfg))
    model = model or f"models:/{cfg.registry.name}@{registry.CHAMPION}"
    if model.startswith(REMOTE_MODEL):
        model_file, codec = registry.download(cfg, model)
    elif Path(model).is_dir() and (Path(model) / registry.PACKAGE_FILE).is_file():
        info = json.loads((Path(model) / registry.PACKAGE_FILE).read_text())
        model_file, codec = Path(model) / info["model"], Path(model) / info["codec"]
    else:
        model_file = Path(model)
    dtype = resolve_dtype(cfg.generate.precision, device)
    return load_model_package(model_file, codec, device=device, dtype=dtype), model
