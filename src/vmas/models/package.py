"""The model file format, in one place: a trained model as one loadable thing.

``model.pt`` = ``{"state_dict", "config", "codec", "codec_sha256", "trained_on"}``: the weights (EMA
when training kept an average), the config they were trained with, and the codec they belong to.
``vmas train`` writes it with :func:`save_model`; the registry packages the same file with the codec
beside it; evaluate and generate read it with :func:`load_model_package`, which rebuilds the network
from the stored config (never from the current one, which may have changed since) and checks that
the codec is the one the model was trained on.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from vmas.codec import Codec, load_codec
from vmas.config import Config
from vmas.errors import StageError
from vmas.io import atomic_path, file_sha256
from vmas.layout import MODEL_FILE
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


def save_model(model: torch.nn.Module, cfg: Config, codec_path: Path, codec_sha: str, path: Path,
               trained_on: dict | None = None) -> None:
    """The final weights with what is needed to use them: ``{"state_dict", "config", "codec", "codec_sha256",
    "trained_on"}`` (``trained_on``: the clip count and data fingerprint, see :func:`vmas.training.train.training_data`).

    Saved through a buffer: ``torch.save`` to a file names the archive after the (temporary) file,
    so the same weights would hash differently on every save; the registry and ``vmas evaluate``
    name a model by its file hash.
    """
    package = {"state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
               "config": cfg.model_dump(mode="json"), "codec": str(codec_path), "codec_sha256": codec_sha,
               "trained_on": trained_on}
    buffer = io.BytesIO()
    torch.save(package, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def trained_config(path: str | Path) -> Config:
    """The config a model file was trained with, read without loading its weights."""
    package = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    return Config.model_validate(package["config"])


def load_model_package(path: str | Path, codec_path: str | Path | None = None, device: str = "cpu",
                       dtype: torch.dtype = torch.float32) -> ModelPackage:
    """Load ``model.pt`` (or a folder holding it) and its codec (``codec_path``, else the path it records).

    ``dtype`` is the network's (bf16 halves memory and speeds up GPUs); the codec stays float32.
    """
    path = Path(path)
    if path.is_dir():
        path = path / MODEL_FILE
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
