"""Which device and number format a step runs on, chosen the same way everywhere.

Each config section that runs torch has a ``device`` key (``codec.device``, ``generate.device``);
the caller passes that key's name so an impossible choice is reported against the key the user set.
"""

from __future__ import annotations

import torch

from vmas.errors import StageError


def select_device(setting: str, key: str = "device") -> str:
    """``auto`` -> ``cuda`` when a CUDA device is visible, else ``cpu``; any other value is used as given.

    ``key`` names the setting (``generate.device``) in the error when ``cuda`` is asked for and absent.
    """
    if setting.startswith("cuda") and not torch.cuda.is_available():
        raise StageError(f"{key} is {setting} but no CUDA device is visible")
    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return setting


def resolve_dtype(precision: str, device: str) -> torch.dtype:
    """``auto`` -> bfloat16 on a CUDA device that supports it, else float32."""
    if precision == "bf16" or (precision == "auto" and device.startswith("cuda") and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float32


def resolve_precision(setting: str) -> str:
    """Lightning's precision for ``train.precision``: ``auto`` is bf16 mixed precision on a GPU that has it,
    else full fp32."""
    if setting != "auto":
        return setting if setting != "32" else "32-true"
    return "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "32-true"
