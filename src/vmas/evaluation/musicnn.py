"""musicnn (Pons & Serra, 2019) in plain PyTorch: a pretrained music tagger whose penultimate layer is the embedding
that FAD uses and whose 50 tag probabilities KL compares.

A port of the ``MTT_musicnn`` model of the ``musicnn`` 0.1.0 package (ISC licence, see
``weights/LICENSE-musicnn``); ``scripts/convert_musicnn.py`` converts its TensorFlow checkpoint. The port gives the
same outputs as musicnn's own ``extractor`` (``tests/unit/evaluation/test_musicnn.py`` checks it against outputs of
the TensorFlow model).

Input: log-mel spectrograms as musicnn computes them (:func:`log_mel`): 16 kHz mono, STFT with n_fft 512 and hop 256
(16 ms), 96 mel bands, ``log10(10000 * mel + 1)`` after rounding the mel power to float16 as musicnn does. The
network sees windows of 187 frames (3 s); :meth:`MusicnnTagger.windows` cuts them as musicnn's ``extractor`` does by
default, without overlap.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SAMPLE_RATE = 16000
N_FFT = 512
HOP = 256
N_MELS = 96
# librosa.time_to_frames(3 s) + 1, as musicnn's extractor computes it for its default input_length=3
WINDOW_FRAMES = 187
# musicnn's extractor default (input_overlap=False): consecutive windows, no overlap, the tail that fills no
# window dropped
HOP_FRAMES = WINDOW_FRAMES

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "musicnn_mtt.pt"
WEIGHTS_FORMAT = "vmas-musicnn-v1"

BN_EPS = 1e-3  # tf.compat.v1.layers.batch_normalization's default


def log_mel(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """musicnn's input representation: ``[n]`` or ``[channels, n]`` audio -> ``[frames, 96]`` float32.

    As ``musicnn.extractor.batch_data`` computes it after ``librosa.load(file, sr=16000)``: the mean of the
    channels, librosa's default resampler (soxr_hq) to 16 kHz when ``sample_rate`` differs, librosa's power mel
    spectrogram (n_fft 512, hop 256, 96 bands, centred frames), rounded to float16, then ``log10(10000 x + 1)``
    in float32. (musicnn relies on numpy 1's promotion of ``10000 * float16`` to float32; under numpy 2 the same
    line stays in float16 and overflows, so the cast is explicit here.) ``frames = 1 + n_16k // 256``.
    """
    import librosa

    y = np.asarray(audio, dtype=np.float32)
    if y.ndim == 2:
        if y.shape[0] > y.shape[1]:
            raise ValueError(f"audio of shape {y.shape}: expected [n] or [channels, n]")
        y = y.mean(0)
    elif y.ndim != 1:
        raise ValueError(f"audio of shape {y.shape}: expected [n] or [channels, n]")
    if sample_rate != SAMPLE_RATE:
        y = librosa.resample(y, orig_sr=sample_rate, target_sr=SAMPLE_RATE, res_type="soxr_hq")
    mel = librosa.feature.melspectrogram(y=y, sr=SAMPLE_RATE, hop_length=HOP, n_fft=N_FFT, n_mels=N_MELS).T
    mel = mel.astype(np.float16).astype(np.float32)
    return np.log10(np.float32(10000) * mel + np.float32(1))


def frame_windows(mel: np.ndarray) -> np.ndarray:
    """``[frames, 96]`` -> ``[W, 187, 96]``: windows at frames ``0, 187, 374, ...`` that fit whole.

    A spectrogram shorter than one window (a clip under 3 s) is padded with zeros, the log-mel of silence, to one
    window (musicnn's extractor fails on it instead).
    """
    mel = np.asarray(mel, dtype=np.float32)
    if len(mel) < WINDOW_FRAMES:
        mel = np.concatenate([mel, np.zeros((WINDOW_FRAMES - len(mel), mel.shape[1]), np.float32)])
    starts = range(0, len(mel) - WINDOW_FRAMES + 1, HOP_FRAMES)
    return np.stack([mel[s:s + WINDOW_FRAMES] for s in starts])


def _same_time_pad(x: torch.Tensor, kernel: int) -> torch.Tensor:
    """Zero-pad the time axis (dim 2 of ``[B, C, T, F]``) as TensorFlow's ``same`` does for stride 1."""
    before = (kernel - 1) // 2
    return F.pad(x, (0, 0, before, kernel - 1 - before))


class Musicnn(nn.Module):
    """musicnn's network: ``mel [B, T, 96] -> (tags [B, n_classes] probabilities, penultimate [B, backend_units])``.

    Front end: a batch norm of the input, then two timbral convolutions (7 frames x 38 and x 67 mel bands, 204
    filters each) and three temporal ones (128, 64 and 32 frames x 1 band, 51 filters each), each ReLU, batch norm
    and a max over frequency: 561 channels per frame. Mid end: three 1-D convolutions of 7 frames
    (``midend_channels`` filters, ReLU, batch norm), the last two residual; the front- and mid-end features are
    concatenated (753 channels for 64 filters). Back end: max and mean over time, batch norm, a dense layer
    (ReLU, batch norm) whose output is the penultimate embedding, and a dense layer to the tag logits.

    Inference only: dropout is left out and the batch norms need ``eval()`` (their running statistics). ``T`` is
    187 for the pretrained weights, though the network runs on any length (the pools are global).
    """

    def __init__(self, n_classes: int = 50, midend_channels: int = 64, backend_units: int = 200,
                 n_mels: int = N_MELS) -> None:
        super().__init__()
        timbral, temporal = 204, 51  # int(1.6 * 128), int(1.6 * 32)
        self.timbral_bands = (int(0.4 * n_mels), int(0.7 * n_mels))
        self.temporal_frames = (128, 64, 32)
        self.input_bn = nn.BatchNorm2d(1, eps=BN_EPS)
        self.timbral_convs = nn.ModuleList(nn.Conv2d(1, timbral, (7, b)) for b in self.timbral_bands)
        self.timbral_bns = nn.ModuleList(nn.BatchNorm2d(timbral, eps=BN_EPS) for _ in self.timbral_bands)
        self.temporal_convs = nn.ModuleList(nn.Conv2d(1, temporal, (k, 1)) for k in self.temporal_frames)
        self.temporal_bns = nn.ModuleList(nn.BatchNorm2d(temporal, eps=BN_EPS) for _ in self.temporal_frames)
        frontend = len(self.timbral_bands) * timbral + len(self.temporal_frames) * temporal
        self.midend_convs = nn.ModuleList(
            nn.Conv1d(c, midend_channels, 7) for c in (frontend, midend_channels, midend_channels))
        self.midend_bns = nn.ModuleList(nn.BatchNorm1d(midend_channels, eps=BN_EPS) for _ in range(3))
        self.features = frontend + 3 * midend_channels
        self.pool_bn = nn.BatchNorm1d(2 * self.features, eps=BN_EPS)
        self.dense = nn.Linear(2 * self.features, backend_units)
        self.dense_bn = nn.BatchNorm1d(backend_units, eps=BN_EPS)
        self.classifier = nn.Linear(backend_units, n_classes)

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, T, n_mels]`` log-mel -> ``([B, n_classes]`` sigmoid tag probabilities, ``[B, backend_units])``."""
        x = self.input_bn(mel.unsqueeze(1))  # [B, 1, T, F]
        front = []
        for conv, bn in zip(self.timbral_convs, self.timbral_bns):
            front.append(bn(F.relu(conv(F.pad(x, (0, 0, 3, 3))))).amax(-1))  # [B, 204, T]
        for k, conv, bn in zip(self.temporal_frames, self.temporal_convs, self.temporal_bns):
            front.append(bn(F.relu(conv(_same_time_pad(x, k)))).amax(-1))  # [B, 51, T]
        h = torch.cat(front, 1)  # [B, 561, T]
        layers = [h]
        for i, (conv, bn) in enumerate(zip(self.midend_convs, self.midend_bns)):
            out = bn(F.relu(conv(F.pad(layers[-1], (3, 3)))))  # [B, midend_channels, T]
            layers.append(out if i == 0 else out + layers[-1])
        h = torch.cat(layers, 1)  # [B, features, T]
        # TensorFlow flattens [B, features, (max, mean)]: max and mean interleave per channel
        pooled = torch.stack([h.amax(-1), h.mean(-1)], -1).flatten(1)  # [B, 2 * features]
        penultimate = self.dense_bn(F.relu(self.dense(self.pool_bn(pooled))))
        return torch.sigmoid(self.classifier(penultimate)), penultimate


class MusicnnTagger:
    """A pretrained :class:`Musicnn` with musicnn's preprocessing: audio in, tags or embeddings per 3 s window.

    ``tags`` and ``embed`` take ``[n]`` or ``[channels, n]`` audio at any sample rate and return one row per
    window of :func:`frame_windows` (187 frames, about 2.99 s, without overlap; a clip under 3 s gives one
    zero-padded window).
    """

    sample_rate = SAMPLE_RATE

    def __init__(self, model: Musicnn, labels: list[str], name: str, device: str = "cpu",
                 batch_size: int = 32) -> None:
        self.model = model.to(device).eval()
        self.labels = list(labels)
        self.name = name
        self.device = device
        self.batch_size = batch_size

    @property
    def dim(self) -> int:
        """Embedding size ``D`` (200 for the pretrained models)."""
        return self.model.dense.out_features

    @classmethod
    def load(cls, path: str | Path | None = None, device: str = "cpu") -> MusicnnTagger:
        """Load a weights file written by ``scripts/convert_musicnn.py``; ``None``: the bundled MTT_musicnn.

        Raises ``FileNotFoundError`` or ``ValueError`` naming the file when it is missing or not such a file.
        """
        path = Path(path) if path is not None else DEFAULT_WEIGHTS
        if not path.is_file():
            raise FileNotFoundError(f"{path}: musicnn weights file not found (scripts/convert_musicnn.py writes it)")
        try:
            package = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the same error to the caller
            raise ValueError(f"{path}: not a readable musicnn weights file ({type(exc).__name__}: {exc})") from None
        if not isinstance(package, dict) or package.get("format") != WEIGHTS_FORMAT or \
                not {"state_dict", "labels"} <= set(package):
            keys = sorted(package) if isinstance(package, dict) else type(package).__name__
            raise ValueError(f"{path}: not a musicnn weights file of format {WEIGHTS_FORMAT} (found {keys})")
        state, labels = package["state_dict"], package["labels"]
        try:
            model = Musicnn(n_classes=len(labels), midend_channels=state["midend_convs.0.weight"].shape[0],
                            backend_units=state["dense.weight"].shape[0])
            model.load_state_dict(state)
        except (KeyError, RuntimeError) as exc:
            raise ValueError(f"{path}: weights do not fit the musicnn network ({exc})") from None
        return cls(model, labels, package.get("name", path.stem), device=device)

    def windows(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """``[n]`` or ``[channels, n]`` audio -> ``[W, 187, 96]`` log-mel windows (see :func:`frame_windows`)."""
        return frame_windows(log_mel(audio, sample_rate))

    @torch.no_grad()
    def run(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``[W, 187, 96]`` windows -> ``([W, 50]`` tag probabilities, ``[W, D]`` embeddings), in batches."""
        tags, embeddings = [], []
        for i in range(0, len(windows), self.batch_size):
            batch = torch.as_tensor(np.asarray(windows[i:i + self.batch_size], np.float32), device=self.device)
            t, e = self.model(batch)
            tags.append(t.cpu().numpy())
            embeddings.append(e.cpu().numpy())
        return np.concatenate(tags), np.concatenate(embeddings)

    def tags(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Tag probabilities per window, ``[W, 50]`` (columns in the order of ``labels``)."""
        return self.run(self.windows(audio, sample_rate))[0]

    def embed(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Penultimate-layer embeddings per window, ``[W, D]``: what FAD compares."""
        return self.run(self.windows(audio, sample_rate))[1]
