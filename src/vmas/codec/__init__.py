"""Audio codec: EnCodec (32 kHz mono, 4 x 2048 codebooks at 50 Hz) behind a small interface.

The names below load on first use (PEP 562), so importing the stage registry (which holds
``vmas.codec.train_codec``) does not pull in torch and audiocraft: ``vmas --help`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vmas.codec.builders import build_encodec, encodec_xp_config
    from vmas.codec.loading import CodecLoadingError, load_codec, save_codec
    from vmas.codec.model import Codec

_HOME = {"Codec": "vmas.codec.model", "CodecLoadingError": "vmas.codec.loading", "build_encodec": "vmas.codec.builders",
         "encodec_xp_config": "vmas.codec.builders", "load_codec": "vmas.codec.loading", "save_codec": "vmas.codec.loading"}

__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name]), name)
    raise AttributeError(f"module 'vmas.codec' has no attribute {name!r}")
