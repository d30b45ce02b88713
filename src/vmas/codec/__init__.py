"""Audio codec: EnCodec (32 kHz mono, 4 x 2048 codebooks at 50 Hz) behind a small interface."""

from vmas.codec.builders import build_encodec, encodec_xp_config
from vmas.codec.loading import CodecLoadingError, load_codec, save_codec
from vmas.codec.model import Codec

__all__ = ["Codec", "CodecLoadingError", "build_encodec", "encodec_xp_config", "load_codec", "save_codec"]
