"""Audio files: WAV stems with soundfile, any container's audio track through PyAV.

An audio track is decoded packet by packet: a packet the demuxer or the decoder rejects (a
truncated last AC-3 frame, a damaged AAC frame) is skipped and counted, and the time it covered
is filled with silence, so one bad packet costs its few milliseconds, not the whole track.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import soundfile as sf

from vmas.errors import RowError
from vmas.io import atomic_path

log = logging.getLogger(__name__)

# demuxer errors in a row after which the rest of a file is taken as unreadable (each retry reads on)
MAX_CONSECUTIVE_DEMUX_ERRORS = 64


class AudioReadError(RowError):
    """A file whose audio cannot be read at all: no audio stream, or not one packet decodable."""


@dataclass(frozen=True)
class DecodedAudio:
    """One audio track as read by :func:`decode_audio`.

    ``audio`` is ``[channels, n]`` float32 at ``sample_rate``; ``damaged_packets`` of
    ``packets`` could not be read or decoded, and ``silence_s`` seconds of silence stand in
    for them (their place in time kept); ``converted_frames`` came out of the decoder in another
    channel layout or rate than the stream's first (a damaged AC-3 header does that) and were
    converted to it.
    """

    audio: np.ndarray
    sample_rate: int
    packets: int
    damaged_packets: int
    silence_s: float
    first_error: str | None = None
    converted_frames: int = 0


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> None:
    """Write ``audio`` (``[n]`` mono or ``[n, channels]``, float in [-1, 1]) atomically."""
    with atomic_path(path) as tmp:
        sf.write(tmp, np.clip(audio, -1.0, 1.0), sample_rate, subtype=subtype, format="WAV")


def read_audio(path: str | Path, sample_rate: int | None = None, mono: bool = True) -> tuple[np.ndarray, int]:
    """Decode the first audio stream of ``path``: ``([n] or [channels, n] float32, sample_rate)``.

    Resamples with FFmpeg's resampler when ``sample_rate`` is given. Mono is the mean of the
    channels, taken here: FFmpeg's own stereo-to-mono downmix adds 3 dB. Damaged packets are
    skipped, replaced by silence and counted in a warning naming the file (:func:`decode_audio`).
    Raises :class:`AudioReadError` (a ``ValueError``) naming the file when it has no audio stream
    or no decodable audio packet.
    """
    decoded = decode_audio(path, sample_rate)
    return (decoded.audio.mean(0) if mono else decoded.audio), decoded.sample_rate


def decode_audio(path: str | Path, sample_rate: int | None = None) -> DecodedAudio:
    """The first audio stream of ``path`` as ``[channels, n]`` float32 at ``sample_rate`` (default: its own).

    Channels are the stream's own layout (a frame in another layout, as a damaged AC-3 header
    can give, is converted to it). A packet that fails to demux or decode is skipped; once a
    good frame follows, silence fills the time from where the audio stopped to that frame's
    timestamp (and at the end, to the end of the last skipped packet), so everything after
    the damage stays in place. The count goes to a warning that names the file.
    """
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise AudioReadError("unreadable", f"{path}: not a readable media file ({exc})") from None
    with container:
        if not container.streams.audio:
            raise AudioReadError("no_audio", f"{path}: no audio stream")
        stream = container.streams.audio[0]
        reader = _TolerantReader(stream, sample_rate)
        reader.read(container)
    decoded = reader.result()
    if reader.frames == 0 and decoded.damaged_packets:
        raise AudioReadError("audio_unreadable", f"{path}: audio stream #{stream.index} "
                             f"({stream.codec_context.name}): none of its {decoded.packets} packets could be "
                             f"decoded ({decoded.first_error})")
    if decoded.converted_frames:
        log.info("%s: %d audio frames came in another channel layout or rate than the stream's; converted",
                 path, decoded.converted_frames)
    if decoded.damaged_packets:
        log.warning("%s: %d of %d audio packets could not be decoded (%s); %.3f s of silence stand in for them",
                    path, decoded.damaged_packets, decoded.packets, decoded.first_error, decoded.silence_s,
                    extra={"fields": {"damaged_packets": decoded.damaged_packets}})
    return decoded


class _TolerantReader:
    """Decodes one audio stream packet by packet into ``[channels, n]`` chunks at one rate and layout.

    Time is kept in seconds from the stream's first sample: ``emitted_s`` is how much audio has
    been produced; after a skipped packet, the next good frame's timestamp says how much
    silence to put in first.
    """

    def __init__(self, stream, sample_rate: int | None):
        self.stream = stream
        self.rate = int(sample_rate or stream.codec_context.sample_rate)
        self.layout = stream.layout.name if stream.layout.nb_channels else "stereo"
        self.channels = av.AudioLayout(self.layout).nb_channels
        self.chunks: list[np.ndarray] = []
        self.resampler = None
        self.resampler_key = None
        self.first_key = None  # (layout, rate) of the first frame: the stream's own
        self.converted = 0
        self.origin: float | None = None  # time (s) of the stream's first sample
        self.emitted_s = 0.0  # audio produced so far (s), at the input side of the resampler
        self.pending_gap_to: float | None = None  # end (s) of the last skipped packet, while unfilled
        self.packets = self.damaged = self.frames = 0  # frames: decoded ones
        self.silence_s = 0.0
        self.first_error: str | None = None

    # ---------------------------------------------------------------- reading

    def read(self, container) -> None:
        demuxer = container.demux(self.stream)
        failures = 0
        while True:
            try:
                packet = next(demuxer)
            except StopIteration:
                break
            except av.error.FFmpegError as exc:  # a damaged container unit: demux again from where it stopped
                self._damaged(None, exc)
                failures += 1
                if failures > MAX_CONSECUTIVE_DEMUX_ERRORS:
                    break
                demuxer = container.demux(self.stream)
                continue
            failures = 0
            if packet.size:
                self.packets += 1
            try:
                frames = self.stream.decode(packet)
            except (av.error.FFmpegError, ValueError) as exc:
                self._damaged(packet, exc)
                continue
            for frame in frames:
                self._frame(frame)
        try:
            for frame in self.stream.decode(None):
                self._frame(frame)
        except (av.error.FFmpegError, ValueError):
            pass  # nothing left to drain from a decoder that failed on its last packet
        if self.pending_gap_to is not None:  # the damage reached the end: keep the track's length
            self._silence(self.pending_gap_to - self.emitted_s, self.rate, self.layout)
        self._flush()

    def result(self) -> DecodedAudio:
        audio = (np.concatenate(self.chunks, axis=1) if self.chunks
                 else np.zeros((self.channels, 0), np.float32)).astype(np.float32, copy=False)
        return DecodedAudio(audio, self.rate, self.packets, self.damaged, self.silence_s, self.first_error,
                            self.converted)

    # ---------------------------------------------------------------- pieces

    def _seconds(self, pts) -> float | None:
        tb = self.stream.time_base
        return None if pts is None or tb is None else float(pts * tb)

    def _damaged(self, packet, exc: Exception) -> None:
        self.damaged += 1
        if self.first_error is None:
            at = self._seconds(packet.pts) if packet is not None else None
            self.first_error = (f"{type(exc).__name__} at {at:.3f} s" if at is not None
                                else type(exc).__name__) + f": {exc}"
        if packet is None or packet.pts is None:
            return
        start = self._seconds(packet.pts)
        end = start + (self._seconds(packet.duration) or 0.0)
        if self.origin is None:  # the very first packet is damaged: time starts with it
            self.origin = start
        end -= self.origin
        self.pending_gap_to = end if self.pending_gap_to is None else max(self.pending_gap_to, end)

    def _frame(self, frame: av.AudioFrame) -> None:
        at = self._seconds(frame.pts)
        if at is not None:
            if self.origin is None:
                self.origin = at
            if self.pending_gap_to is not None:  # a good frame after damage: fill up to where it starts
                self._silence(self._whole_frames(at - self.origin - self.emitted_s, frame.sample_rate),
                              frame.sample_rate, frame.layout.name)
        self.pending_gap_to = None
        self.frames += 1
        key = (frame.layout.name, frame.sample_rate)
        self.first_key = self.first_key or key
        self.converted += key != self.first_key
        self._resample(frame)
        self.emitted_s += frame.samples / frame.sample_rate

    def _whole_frames(self, seconds: float, rate: int) -> float:
        """``seconds`` snapped to whole codec frames when within the timestamps' rounding of them
        (Matroska keeps milliseconds: 10 AAC frames read as 213 ms, not 213.33 ms)."""
        size = self.stream.codec_context.frame_size
        if not size or seconds <= 0:
            return seconds
        frames = round(seconds * rate / size)
        slack = max(0.001, float(self.stream.time_base or 0))
        return frames * size / rate if abs(frames * size / rate - seconds) <= slack else seconds

    def _silence(self, seconds: float, rate: int, layout: str) -> None:
        n = int(round(seconds * rate))
        if n <= 0:
            return
        channels = av.AudioLayout(layout).nb_channels
        for start in range(0, n, 65536):
            frame = av.AudioFrame.from_ndarray(np.zeros((channels, min(65536, n - start)), np.float32),
                                               format="fltp", layout=layout)
            frame.sample_rate = rate
            self._resample(frame)
        self.emitted_s += n / rate
        self.silence_s += n / rate

    def _resample(self, frame: av.AudioFrame) -> None:
        """Into ``self.rate`` and ``self.layout``; a frame of another rate or layout gets its own resampler."""
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        if key != self.resampler_key:
            self._flush()
            self.resampler = av.AudioResampler(format="fltp", layout=self.layout, rate=self.rate)
            self.resampler_key = key
        frame.pts = None  # the resampler needs no timestamps: time is kept here
        self.chunks.extend(out.to_ndarray() for out in self.resampler.resample(frame))

    def _flush(self) -> None:
        if self.resampler is not None:
            self.chunks.extend(out.to_ndarray() for out in self.resampler.resample(None))
            self.resampler = self.resampler_key = None


def residual_vocal_db(residual_energy, mixture_energy) -> float:
    """Residual vocal energy relative to the mixture's, in dB, over the same seconds."""
    return float(10 * np.log10(max(float(np.sum(residual_energy)), 1e-12) / max(float(np.sum(mixture_energy)), 1e-12)))


# --------------------------------------------------------------------------- loudness and true peak

TRUE_PEAK_OVERSAMPLING = 4  # BS.1770-4 Annex 2: 4x for 48 kHz (more would only find slightly higher peaks)
_BLOCK = 1 << 18  # samples handled at once when oversampling (bounds memory on long tracks)


def integrated_loudness(audio: np.ndarray, sample_rate: int) -> float | None:
    """Integrated loudness of ``audio [C, n]`` or ``[n]`` in LUFS (ITU-R BS.1770-4: K-weighting,
    400 ms blocks every 100 ms, the -70 LUFS absolute and -10 LU relative gates; the channels of
    mono and stereo weigh 1). None for silence or under 0.4 s (nothing above the gates).

    K-weighting is designed for any sample rate (the standard's two biquads by the bilinear
    transform, as pyloudnorm does); agrees with ``torchaudio.functional.loudness`` within 0.01 LU.
    """
    from scipy.signal import sosfilt

    x = np.atleast_2d(np.asarray(audio, np.float64))
    block, hop = int(round(0.4 * sample_rate)), int(round(0.1 * sample_rate))
    if x.shape[-1] < block or not np.any(x):
        return None
    weighted = sosfilt(_k_weighting(sample_rate), x, axis=-1)  # [C, n]
    power = np.cumsum(np.pad(weighted**2, ((0, 0), (1, 0))), axis=-1)  # [C, n + 1] running sum
    starts = np.arange(0, x.shape[-1] - block + 1, hop)
    z = ((power[:, starts + block] - power[:, starts]) / block).sum(0)  # [blocks] mean square, channels summed
    loud = -0.691 + 10 * np.log10(np.maximum(z, 1e-20))
    z = z[loud > -70.0]
    if not z.size:
        return None
    relative = -0.691 + 10 * np.log10(z.mean()) - 10.0
    z = z[-0.691 + 10 * np.log10(z) > relative]
    return float(-0.691 + 10 * np.log10(z.mean()))


def _k_weighting(sample_rate: int) -> np.ndarray:
    """BS.1770's K-weighting filter at ``sample_rate`` as second-order sections ``[2, 6]``: a high
    shelf (+4 dB above ~1.7 kHz, the head's effect) then a high pass (~38 Hz, RLB weighting).
    The analog prototypes behind the standard's 48 kHz coefficients (libebur128's derivation), so
    48 kHz gives the standard's own filter and other rates its equivalent."""
    k = np.tan(np.pi * 1681.974450955533 / sample_rate)
    q, vh = 0.7071752369554196, 10 ** (3.999843853973347 / 20)
    vb = vh ** 0.4996667741545416
    a0 = 1 + k / q + k * k
    shelf = [(vh + vb * k / q + k * k) / a0, 2 * (k * k - vh) / a0, (vh - vb * k / q + k * k) / a0,
             1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0]
    k, q = np.tan(np.pi * 38.13547087602444 / sample_rate), 0.5003270373238773
    a0 = 1 + k / q + k * k
    high_pass = [1.0, -2.0, 1.0, 1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0]
    return np.array([shelf, high_pass])


def true_peak_envelope(audio: np.ndarray) -> np.ndarray:
    """``[n]``: at each sample of ``audio [C, n]``, the largest magnitude over the channels of the
    signal 4x oversampled (BS.1770-4 Annex 2: polyphase FIR interpolation), taken over the
    sample and the three interpolated points that follow it."""
    from scipy.signal import resample_poly

    x = np.atleast_2d(np.asarray(audio, np.float32))
    n, k, margin = x.shape[1], TRUE_PEAK_OVERSAMPLING, 64
    envelope = np.empty(n)
    for start in range(0, n, _BLOCK):
        end = min(n, start + _BLOCK)
        lo, hi = max(0, start - margin), min(n, end + margin)
        up = np.abs(resample_poly(x[:, lo:hi], k, 1, axis=-1)).max(0)  # [k * (hi - lo)]
        envelope[start:end] = up.reshape(hi - lo, k)[start - lo : end - lo].max(1)
    return np.maximum(envelope, np.abs(x).max(0))


def true_peak_db(audio: np.ndarray) -> float:
    """True peak of ``audio [C, n]`` in dBTP (dB relative to full scale, 4x oversampled)."""
    env = true_peak_envelope(audio)
    return float(20 * np.log10(max(float(env.max()) if env.size else 0.0, 1e-10)))


AAC_FRAME = 1024  # samples per AAC frame; FFmpeg's encoder also puts one frame of priming first
# The music track's AAC bit rate (vmas.media.mux writes it; aac_round_trip measures with it): at FFmpeg's
# default (69 kb/s for mono at 32 kHz) AAC's peaks overshoot by up to 3-4 dB at sharp transients, at
# 128 kb/s by about 0.5 dB, so the true-peak limiter takes less off.
MUSIC_AAC_BIT_RATE: int = 128_000


def aac_round_trip(audio: np.ndarray, sample_rate: int, bit_rate: int | None = MUSIC_AAC_BIT_RATE) -> np.ndarray:
    """``audio [C, n]`` encoded as :func:`vmas.media.mux.mux_music` encodes it (FFmpeg's AAC encoder
    at ``bit_rate``, 1024-sample frames, at most two channels) and decoded again: ``[C', m]``,
    ``m >= n``, sample ``i`` aligned with the input's (the encoder's priming removed; the tail of
    the last frame kept, since a player plays it too).

    What a player will hear, so loudness and true peak can be measured on it before the file is
    written: AAC's quantisation moves peaks, at sharp transients by a dB or more.
    """
    x = np.atleast_2d(np.asarray(audio, np.float32))
    x = np.ascontiguousarray(np.clip(x[:2], -1.0, 1.0))
    layout = "mono" if x.shape[0] == 1 else "stereo"
    encoder = av.CodecContext.create("aac", "w")
    encoder.sample_rate, encoder.layout, encoder.format = sample_rate, layout, "fltp"
    if bit_rate:
        encoder.bit_rate = bit_rate
    encoder.open()
    packets = []
    for i in range(0, x.shape[1], AAC_FRAME):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x[:, i : i + AAC_FRAME]), format="fltp", layout=layout)
        frame.sample_rate, frame.pts = sample_rate, i
        packets += encoder.encode(frame)
    packets += encoder.encode(None)
    decoder = av.CodecContext.create("aac", "r")
    decoder.sample_rate, decoder.layout = sample_rate, layout
    decoder.extradata = encoder.extradata
    chunks = [f.to_ndarray() for p in packets for f in decoder.decode(p)]
    chunks += [f.to_ndarray() for f in decoder.decode(None)]
    decoded = np.concatenate(chunks, axis=1) if chunks else np.zeros((x.shape[0], 0), np.float32)
    return decoded[:, AAC_FRAME:]


def highpass(audio: np.ndarray, sample_rate: int, cutoff_hz: float = 20.0) -> np.ndarray:
    """``audio [C, n]`` without what lies below ``cutoff_hz`` (DC, slow drift): inaudible, but it
    takes peak headroom and no loudness, so it would keep the music from its loudness target.
    Zero phase (a 2nd-order Butterworth run forwards and backwards), so no peak moves."""
    from scipy.signal import butter, sosfiltfilt

    x = np.atleast_2d(np.asarray(audio, np.float64))
    if x.shape[1] < 64:
        return x - x.mean(1, keepdims=True)
    sos = butter(2, cutoff_hz, "highpass", fs=sample_rate, output="sos")
    return sosfiltfilt(sos, x, axis=-1)


def limit_true_peak(audio: np.ndarray, sample_rate: int, ceiling_db: float | np.ndarray,
                    attack_db_per_s: float = 1500.0, release_db_per_s: float = 200.0) -> tuple[np.ndarray, float]:
    """``audio [C, n]`` with its true peaks held at ``ceiling_db`` dBTP (one value, or ``[n]``: one per
    sample), and the deepest gain reduction (dB).

    A look-ahead limiter, computed over the whole track at once: each sample's needed gain
    (ceiling over its 4x-oversampled peak) is spread so the gain falls at most
    ``attack_db_per_s`` before a peak (it starts falling early: look-ahead) and rises at most
    ``release_db_per_s`` after it, then lightly smoothed (1 ms). Every step only lowers the
    gain, so the result never passes the ceiling; a last scalar trim removes what the smooth
    gain's own interpolation may add.
    """
    from scipy.ndimage import minimum_filter1d, uniform_filter1d

    x = np.atleast_2d(np.asarray(audio, np.float64))
    ceiling_db = np.broadcast_to(np.asarray(ceiling_db, np.float64), (x.shape[1],))
    env = true_peak_envelope(x)
    need = np.minimum(0.0, ceiling_db - 20 * np.log10(np.maximum(env, 1e-10)))  # [n] dB, <= 0
    if need.min() >= 0:
        return x, 0.0
    t = np.arange(x.shape[1], dtype=np.float64)
    release, attack = release_db_per_s / sample_rate, attack_db_per_s / sample_rate
    gain = release * t + np.minimum.accumulate(need - release * t)  # rises no faster than the release
    gain = np.minimum(gain, -attack * t + np.minimum.accumulate((gain + attack * t)[::-1])[::-1])  # look-ahead
    width = max(1, int(sample_rate / 1000)) | 1
    gain = uniform_filter1d(minimum_filter1d(gain, width, mode="nearest"), width, mode="nearest")
    y = x * 10 ** (gain / 20)
    over = float(np.max(20 * np.log10(np.maximum(true_peak_envelope(y), 1e-10)) - ceiling_db))
    if over > 0:
        y *= 10 ** (-over / 20)
    return y, float(-gain.min()) + max(over, 0.0)


@dataclass(frozen=True)
class Mastered:
    """Music brought to a loudness under a true-peak ceiling (:func:`master`).

    ``audio [C, n]``; the loudness before (LUFS, None for silence), the loudness reached and the
    true peak (dBTP), both measured on the AAC-encoded-then-decoded result; the deepest limiter
    gain reduction (dB); the passes taken; and a warning when the target could not be met.
    """

    audio: np.ndarray
    before_lufs: float | None
    lufs: float | None
    true_peak_dbtp: float | None
    limiting_db: float
    passes: int
    warning: str | None = None

    def as_dict(self) -> dict:
        return {"loudness_before_lufs": _round(self.before_lufs), "loudness_reached_lufs": _round(self.lufs),
                "true_peak_dbtp": _round(self.true_peak_dbtp), "limiting_db": _round(self.limiting_db),
                "loudness_passes": self.passes, "loudness_warning": self.warning}


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 2)


def master(audio: np.ndarray, sample_rate: int, target_lufs: float, ceiling_dbtp: float = -1.0,
           tolerance_lu: float = 0.5, max_limiting_db: float = 12.0, encoder_headroom_db: float = 0.5,
           max_passes: int = 8, encode=aac_round_trip) -> Mastered:
    """``audio [C, n]`` at ``target_lufs`` within ``tolerance_lu``, its true peak at most ``ceiling_dbtp``
    after ``encode`` (default: the AAC encoding the muxer uses), measured on the decoded result.

    Below 20 Hz goes first (:func:`highpass`). Then up to ``max_passes`` passes: gain, a
    true-peak limiter (:func:`limit_true_peak`) at the ceiling less a headroom for the encoder,
    encode and decode, measure. The next pass corrects the gain by the loudness missed (divided
    by how much loudness the last gain change bought: limiting makes that less than 1) and
    learns how far the encoder moves peaks: the headroom becomes the largest overshoot seen, in
    any pass, in an AAC frame whose peak reached the limiter's ceiling (at least
    ``encoder_headroom_db``; at FFmpeg's default 69 kb/s, sharp transients overshoot by 1 to 4 dB,
    and not the same ones from pass to pass, so a spot fix alone does not settle), and where the
    decoded audio passed the ceiling the ceiling goes down around that spot (an AAC frame either
    side) by the overshoot. The
    pass nearest the target among those under the ceiling is kept; when none is near it, the
    nearest is turned down as a whole until it is under (:func:`_trimmed_under_ceiling`).

    The limiter may take at most ``max_limiting_db`` off the loudest peaks: music whose peaks
    stand further above its loudness (very dynamic music) stays quieter than the target, and
    ``warning`` says what was reached.
    """
    from scipy.ndimage import maximum_filter1d

    x = highpass(audio, sample_rate)
    before = integrated_loudness(x, sample_rate)
    if before is None:
        return Mastered(np.atleast_2d(audio), None, None, None, 0.0, 0)
    n, peak_in = x.shape[1], true_peak_db(x)
    frames = max(1, n // AAC_FRAME)
    headroom, overshoots = encoder_headroom_db, []  # overshoots: of AAC frames at the ceiling, every pass
    local = np.zeros(n)  # [n] dB, <= 0: the ceiling lowered where the encoder passed it
    max_gain = ceiling_dbtp - encoder_headroom_db + max_limiting_db - peak_in  # more: a deeper limiter
    gain, tried, results = target_lufs - before, [], []  # results: (y, lufs, peak, limiting, passes)
    for passes in range(1, max_passes + 1):
        applied = min(gain, max_gain)
        ceiling = ceiling_dbtp - headroom + local  # [n] the limiter's ceiling, dBTP
        y, limiting = limit_true_peak(x * 10 ** (applied / 20), sample_rate, ceiling)
        decoded = encode(y, sample_rate)  # [C', m >= n], aligned with y
        lufs, envelope = integrated_loudness(decoded, sample_rate), true_peak_envelope(decoded)
        post = 20 * np.log10(np.maximum(envelope, 1e-10))  # [m] dBTP after the encoder
        peak = float(post.max())
        results.append((y, lufs, peak, limiting, passes))
        if lufs is None:
            break
        loud_ok = abs(lufs - target_lufs) <= tolerance_lu / 2 or (gain >= max_gain and lufs < target_lufs)
        if peak <= ceiling_dbtp and loud_ok:
            break
        pre = 20 * np.log10(np.maximum(true_peak_envelope(y), 1e-10))  # [n] dBTP before it
        pre_f, post_f, ceil_f = (a[: frames * AAC_FRAME].reshape(frames, -1).max(1)
                                 for a in (pre, post[:n], ceiling))
        overshoots += [float(v) for v in (post_f - pre_f)[pre_f > ceil_f - 0.5]]
        if overshoots:
            headroom = max(encoder_headroom_db, max(overshoots) + 0.1)
        if peak > ceiling_dbtp:  # and lower the ceiling around each overshoot, by the overshoot
            over = post - ceiling_dbtp
            over = np.concatenate([over[: n - 1], [over[n - 1 :].max()]])  # the tail counts at the end
            spread = maximum_filter1d(np.maximum(over, 0.0), 2 * AAC_FRAME + 1, mode="nearest")
            local -= np.where(spread > 0, spread + 0.1, 0.0)
        tried.append((applied, lufs))
        slope = 1.0
        if len(tried) > 1 and abs(tried[-1][0] - tried[-2][0]) > 0.05:  # loudness bought per dB of gain
            slope = float(np.clip((tried[-1][1] - tried[-2][1]) / (tried[-1][0] - tried[-2][0]), 0.25, 1.0))
        gain = applied + (target_lufs - lufs) / slope
    results = _trimmed_under_ceiling(results, sample_rate, target_lufs, ceiling_dbtp, tolerance_lu, encode)
    y, lufs, peak, limiting, passes = _best(results, target_lufs, ceiling_dbtp)
    warning = None
    if lufs is None or abs(lufs - target_lufs) > tolerance_lu or peak > ceiling_dbtp:
        reached = "nothing measurable" if lufs is None else f"{lufs:.1f} LUFS"
        warning = (f"loudness target {target_lufs:g} LUFS not reached: {reached} at a true peak of {peak:.1f} dBTP "
                   f"after AAC encoding (ceiling {ceiling_dbtp:g} dBTP); the music's peaks stand "
                   f"{peak_in - before:.1f} dB above its loudness, and the limiter takes at most "
                   f"{max_limiting_db:g} dB off them")
    return Mastered(y.astype(np.float32), before, lufs, peak, limiting, passes, warning)


def _best(results: list, target_lufs: float, ceiling_dbtp: float) -> tuple:
    """The pass closest to the target among those under the ceiling (the least over it when none is)."""
    under = [r for r in results if r[2] <= ceiling_dbtp and r[1] is not None]
    if under:
        return min(under, key=lambda r: abs(r[1] - target_lufs))
    return min(results, key=lambda r: r[2])


def _trimmed_under_ceiling(results: list, sample_rate: int, target_lufs: float, ceiling_dbtp: float,
                           tolerance_lu: float, encode) -> list:
    """``results`` and, when no pass is both under the ceiling and near the target, the pass nearest
    the target turned down as a whole by its overshoot and a growing margin, each measured again
    (AAC's overshoot at a transient moves by a dB with a tenth of a dB of input: so it is tried)."""
    best = _best(results, target_lufs, ceiling_dbtp)
    if best[1] is None or (best[2] <= ceiling_dbtp and abs(best[1] - target_lufs) <= tolerance_lu / 2):
        return results
    nearest = min((r for r in results if r[1] is not None), key=lambda r: abs(r[1] - target_lufs))
    y0, _, peak0, limiting, passes = nearest
    for margin in (0.1, 0.3, 0.6, 1.0, 2.0):
        y = y0 * 10 ** (-(max(peak0 - ceiling_dbtp, 0.0) + margin) / 20)
        decoded = encode(y, sample_rate)
        lufs, peak = integrated_loudness(decoded, sample_rate), true_peak_db(decoded)
        results = [*results, (y, lufs, peak, limiting, passes)]
        if peak <= ceiling_dbtp:
            break
    return results

