"""Decoding and muxing helpers over PyAV (which carries FFmpeg) and soundfile. No stage logic here."""

from vmas.media.audio import read_audio, write_wav
from vmas.media.video import write_mp4

__all__ = ["read_audio", "write_wav", "write_mp4"]
