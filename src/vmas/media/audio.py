"""Audio files: WAV stems with soundfile, any container's audio track through PyAV."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import soundfile as sf

from vmas.io import atomic_path


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> None:
    """Write ``audio`` (``[n]`` mono or ``[n, channels]``, float in [-1, 1]) atomically."""
    with atomic_path(path) as tmp:
        sf.write(tmp, np.clip(audio, -1.0, 1.0), sample_rate, subtype=subtype, format="WAV")


def read_audio(path: str | Path, sample_rate: int | None = None, mono: bool = True) -> tuple[np.ndarray, int]:
    """Decode the first audio stream of ``path``: ``([n] or [channels, n] float32, sample_rate)``.

    Resamples with FFmpeg's resampler when ``sample_rate`` is given. Mono is the mean of the
    channels, taken here: FFmpeg's own stereo-to-mono downmix adds 3 dB. Raises ``ValueError``
    naming the file when it has no audio stream.
    """
    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise ValueError(f"{path}: no audio stream")
        stream = container.streams.audio[0]
        rate = sample_rate or stream.codec_context.sample_rate
        resampler = av.AudioResampler(format="fltp", layout=stream.layout.name, rate=rate)
        chunks = []
        for frame in container.decode(stream):
            chunks.extend(out.to_ndarray() for out in resampler.resample(frame))
        chunks.extend(out.to_ndarray() for out in resampler.resample(None))
    audio = np.concatenate(chunks, axis=1) if chunks else np.zeros((1, 0), np.float32)
    return (audio.mean(0) if mono else audio), rate


def residual_vocal_db(residual_energy, mixture_energy) -> float:
    """Residual vocal energy relative to the mixture's, in dB, over the same seconds."""
    return float(10 * np.log10(max(float(np.sum(residual_energy)), 1e-12) / max(float(np.sum(mixture_energy)), 1e-12)))
