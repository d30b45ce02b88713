"""Pretrained EnCodec from local files only: audiocraft's checkpoint format, or a transformers folder.

- an audiocraft compression checkpoint (``compression_state_dict.bin``: ``{"xp.cfg", "best_state"}``,
  as audiocraft exports its codecs), a file or a folder holding one, loaded by audiocraft's own
  ``load_compression_model``;
- MusicGen's ``compression_state_dict.bin`` that only says ``{"pretrained": "facebook/encodec_32khz"}``:
  resolved from the local Hugging Face cache (``HF_HUB_OFFLINE=1``), never downloaded;
- a transformers EnCodec folder (``config.json`` + weights, e.g. a snapshot of facebook/encodec_32khz).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from vmas.codec.builders import quiet_weight_norm
from vmas.codec.model import Codec
from vmas.config import Config, bundled_codec
from vmas.errors import StageError
from vmas.io import atomic_path
from vmas.layout import CODEC_FILE, trained_codec_path

AUDIOCRAFT_FILE = CODEC_FILE  # audiocraft's export name


class CodecLoadingError(ValueError):
    pass


def _hf_codec(name_or_path: str, device: str):
    from audiocraft.models.encodec import HFEncodecCompressionModel
    from transformers import EncodecModel

    try:
        model = EncodecModel.from_pretrained(name_or_path, local_files_only=True)
    except OSError as exc:
        raise CodecLoadingError(f"{name_or_path}: no local transformers EnCodec here or in the Hugging Face cache "
                                f"({exc}); set codec.pretrained to a local folder") from None
    return HFEncodecCompressionModel(model).to(device)


def load_codec(path: str | Path, device: str = "cpu") -> Codec:
    """Load a pretrained codec from ``path`` (``codec.pretrained``), local files only."""
    from audiocraft.models.loaders import load_compression_model

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = Path(path)
    if not path.exists():
        raise CodecLoadingError(f"{path}: does not exist (codec.pretrained)")
    if path.is_dir() and not (path / AUDIOCRAFT_FILE).is_file():
        if (path / "config.json").is_file():
            return Codec(_hf_codec(str(path), device))
        raise CodecLoadingError(f"{path}: neither an audiocraft codec ({AUDIOCRAFT_FILE}) nor a transformers "
                                "EnCodec folder (config.json)")
    file = path / AUDIOCRAFT_FILE if path.is_dir() else path
    package = torch.load(file, map_location="cpu", weights_only=True)
    if "pretrained" in package:
        return Codec(_hf_codec(str(package["pretrained"]), device))
    if not {"xp.cfg", "best_state"} <= set(package):
        raise CodecLoadingError(f"{file}: not an audiocraft compression checkpoint (keys: {sorted(package)})")
    with quiet_weight_norm():
        return Codec(load_compression_model(str(file), device=device))


def save_codec(model: torch.nn.Module, xp_cfg: dict, path: str | Path) -> None:
    """Write an audiocraft ``EncodecModel`` as audiocraft exports it, so :func:`load_codec` reads it back."""
    from omegaconf import OmegaConf

    package = {"best_state": model.state_dict(), "xp.cfg": OmegaConf.to_yaml(OmegaConf.create(xp_cfg)),
               "version": "vmas", "exported": True}
    with atomic_path(path) as tmp:
        torch.save(package, tmp)


def resolve_codec_path(cfg: Config) -> Path | None:
    """The codec tokenize, train and evaluate use: ``codec.pretrained`` (``vmas:demo``: the one shipped in the
    package), else the gated codec ``train_codec`` published, else None."""
    if cfg.codec.pretrained is not None:
        path = bundled_codec(cfg.codec.pretrained)  # vmas:<name>: shipped in the package
        if not path.exists():
            raise StageError(f"codec.pretrained is {cfg.codec.pretrained}, which does not exist: give a local "
                             "audiocraft compression_state_dict.bin or transformers EnCodec folder, vmas:demo for "
                             "the shipped demo codec, or null to train one (vmas train_codec)")
        return path
    path = trained_codec_path(cfg)
    return path if path.is_file() else None
