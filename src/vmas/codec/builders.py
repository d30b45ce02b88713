"""Config -> EnCodec model, through audiocraft's own builder (the path its checkpoints load by)."""

from __future__ import annotations

import contextlib
import warnings
from typing import Any, Iterator

SEANET_RATIOS_32KHZ_50HZ = [8, 5, 4, 4]  # hop 640 at 32 kHz = 50 frames/s, as MusicGen's codec


def encodec_xp_config(sample_rate: int = 32000, n_q: int = 4, bins: int = 2048, n_filters: int = 64,
                      dimension: int = 128, ratios: list[int] | None = None, lstm: int = 2) -> dict[str, Any]:
    """The ``xp.cfg`` audiocraft stores in a compression checkpoint, for a mono EnCodec.

    Defaults are the released 32 kHz MusicGen codec (SEANet 64 filters, 128-d latent, 4 x 2048 RVQ,
    ratios 8-5-4-4); the demo codec changes ``n_filters`` (and may shrink ``dimension``).
    """
    return {
        "compression_model": "encodec",
        "device": "cpu",
        "sample_rate": sample_rate,
        "channels": 1,
        "encodec": {"autoencoder": "seanet", "quantizer": "rvq", "sample_rate": sample_rate, "channels": 1,
                    "causal": False, "renormalize": False},
        "seanet": {"dimension": dimension, "channels": 1, "causal": False, "n_filters": n_filters,
                   "n_residual_layers": 1, "ratios": list(ratios or SEANET_RATIOS_32KHZ_50HZ), "activation": "ELU",
                   "activation_params": {"alpha": 1.0}, "norm": "weight_norm", "norm_params": {}, "kernel_size": 7,
                   "residual_kernel_size": 3, "last_kernel_size": 7, "dilation_base": 2, "pad_mode": "constant",
                   "true_skip": True, "compress": 2, "lstm": lstm, "disable_norm_outer_blocks": 0,
                   "decoder": {"trim_right_ratio": 1.0, "final_activation": None, "final_activation_params": None},
                   "encoder": {}},
        "rvq": {"n_q": n_q, "q_dropout": False, "bins": bins, "decay": 0.99, "kmeans_init": True, "kmeans_iters": 50,
                "threshold_ema_dead_code": 2, "orthogonal_reg_weight": 0.0, "orthogonal_reg_active_codes_only": False},
        "no_quant": {},
    }


@contextlib.contextmanager
def quiet_weight_norm() -> Iterator[None]:
    """Silence torch's deprecation notice for ``weight_norm``, which audiocraft's SEANet still uses."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*weight_norm.* is deprecated", category=FutureWarning)
        yield


def build_encodec(xp_cfg: dict[str, Any]):
    """An untrained :class:`audiocraft.models.EncodecModel` from an ``xp.cfg`` dict."""
    from audiocraft.models import builders
    from omegaconf import OmegaConf

    with quiet_weight_norm():
        return builders.get_compression_model(OmegaConf.create(xp_cfg))
