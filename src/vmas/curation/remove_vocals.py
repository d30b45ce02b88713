"""remove_vocals: the instrumental track of every kept video (DISCO-MV's vocal removal).

Methods, chosen by ``remove_vocals.method`` (``auto`` picks the first one that can run):

- ``htdemucs``: Demucs' hybrid transformer model, two stems (everything but ``vocals`` summed is
  ``no_vocals``), weights resolved by demucs' own ``get_model(name, repo=model_repo)`` from a local
  folder (``<name>.yaml`` + ``<sig>.th``, the layout of demucs' remote repo); segmented by demucs
  (``segment_s``), on the GPU when there is one. With no ``model_repo``, a torch hub cache that
  holds the model's checkpoints is used the same way (see :func:`hub_cache_repo`).
- ``repet``: REPET-SIM (Rafii & Pardo 2012), the DSP fallback when no weights are present: music
  repeats, a voice does not, so the median of each spectrogram frame's nearest neighbours is the
  background; soft masks split it from the foreground. Runs in 30 s windows, so memory is bounded.

Each row records the method that ran; when the input row names the video's reference stems (ingest
records them, as it finds the synthetic set's beside its videos), the instrumental SDR of the output
and of the untouched mixture. For any video it records the energy per second of the mixture and of
the *residual vocals*: what the same method still finds as vocals when run again on its own output
(reference-free, so it works on real data too).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import yaml

from vmas.errors import StageError
from vmas.manifest import Manifest, schema_with
from vmas.media import read_audio, write_wav
from vmas.media.audio import residual_vocal_db
from vmas.media.stems import REFERENCE_INSTRUMENTAL, REFERENCE_VOCALS
from vmas.stage import Stage

SCHEMA = schema_with(
    pa.field("path", pa.string()),
    pa.field("instrumental_path", pa.string()),
    pa.field("method", pa.string()),
    pa.field("sample_rate", pa.int32()),
    pa.field("sdr_db", pa.float64()),  # output vs the reference instrumental stem (when known)
    pa.field("mixture_sdr_db", pa.float64()),  # the mixture itself vs that stem: the baseline
    pa.field("reference_has_vocals", pa.bool_()),  # the known vocal stem is not silent (null: no stems)
    pa.field("mixture_energy", pa.list_(pa.float32())),  # per second
    pa.field("residual_vocal_energy", pa.list_(pa.float32())),  # per second
    pa.field("residual_vocal_db", pa.float64()),  # residual vs mixture energy, whole video
)
REPET_WINDOW_S = 30.0
REPET_WIDTH_S = 0.5  # neighbours at least this far apart (tuned on the synthetic set: +3 dB SDR on vocal mixes)
REPET_MARGIN = 4.0  # how much a bin must exceed its repeating part to count as voice


# --------------------------------------------------------------------------- methods


def repet_sim(y: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """REPET-SIM on mono ``y`` ``[n]``: returns ``(background, foreground)``, each ``[n]``."""
    import librosa

    hop, n_fft = 512, 2048
    window = int(REPET_WINDOW_S * sr)
    background = np.zeros_like(y)
    for start in range(0, len(y), window):
        seg = y[start : start + window]
        if len(seg) < n_fft:
            background[start : start + len(seg)] = seg
            continue
        spec = librosa.stft(seg, n_fft=n_fft, hop_length=hop)
        mag = np.abs(spec)
        width = min(int(librosa.time_to_frames(REPET_WIDTH_S, sr=sr, hop_length=hop)), max(mag.shape[1] // 4, 1))
        repeating = np.minimum(mag, librosa.decompose.nn_filter(mag, aggregate=np.median, metric="cosine",
                                                               width=max(width, 1)))
        # Conservative: a bin goes to the voice only where it clearly does not repeat.
        foreground = librosa.util.softmask(mag - repeating, REPET_MARGIN * repeating, power=2)
        background[start : start + len(seg)] = librosa.istft((1 - foreground) * spec, hop_length=hop, length=len(seg))
    return background, y - background


@lru_cache(maxsize=2)
def load_demucs(name: str, repo: str):
    """Demucs model ``name`` from the local repo folder ``repo`` (``get_model(name, repo=...)``)."""
    from demucs.pretrained import get_model

    model = get_model(name, repo=Path(repo))
    return model.eval()


def demucs_separate(y: np.ndarray, sr: int, name: str, repo: str, segment_s: float, device: str
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Demucs on mono ``y`` ``[n]`` at ``sr``: ``(no_vocals, vocals)``, each ``[n]`` at ``sr``."""
    import torch
    from demucs.apply import apply_model
    from julius import resample_frac

    model = load_demucs(name, repo)
    if "vocals" not in model.sources:
        raise StageError(f"demucs model {name!r} has no 'vocals' source (it has {model.sources})")
    dev = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    wav = resample_frac(torch.from_numpy(y).float(), sr, model.samplerate)
    mix = wav.expand(model.audio_channels, -1)[None]  # [1, C, T]
    max_segment = float(getattr(model, "segment", segment_s) or segment_s)
    with torch.no_grad():
        stems = apply_model(model, mix, shifts=0, split=True, overlap=0.25, device=dev,
                            segment=min(segment_s, max_segment), progress=False)[0]  # [S, C, T]
    vocal_idx = model.sources.index("vocals")
    vocals = stems[vocal_idx].mean(0)
    no_vocals = stems.sum(0).mean(0) - vocals
    back = [resample_frac(x.cpu(), model.samplerate, sr)[: len(y)].numpy() for x in (no_vocals, vocals)]
    return tuple(np.pad(b, (0, len(y) - len(b))) for b in back)


def _has_model_files(folder: Path, model_name: str) -> bool:
    return folder.is_dir() and ((folder / f"{model_name}.yaml").is_file() or any(folder.glob(f"{model_name}*.th")))


def hub_cache_repo(model_name: str, view_dir: Path) -> Path | None:
    """A demucs repo folder over the torch hub cache, or None when the cache lacks the model.

    ``get_model(name)`` without a repo would go to the network, so instead the bag file demucs ships
    (``demucs/remote/<name>.yaml``) is copied into ``view_dir`` beside links to the cached
    ``<sig>-<checksum>.th`` files, and that folder is given to ``get_model(name, repo=view_dir)``.
    """
    bag = Path(importlib.util.find_spec("demucs").origin).parent / "remote" / f"{model_name}.yaml"
    cache = torch_hub_dir() / "checkpoints"
    if not bag.is_file() or not cache.is_dir():
        return None
    found = [next(iter(sorted(cache.glob(f"{sig}-*.th"))), None) for sig in yaml.safe_load(bag.read_text())["models"]]
    if not found or None in found:
        return None
    view_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(bag, view_dir / bag.name)
    for checkpoint in found:
        link = view_dir / checkpoint.name
        if not link.exists():
            link.symlink_to(checkpoint)
    return view_dir


def torch_hub_dir() -> Path:
    """``torch.hub.get_dir()`` by torch's own rule ($TORCH_HOME/hub, else $XDG_CACHE_HOME/torch/hub),
    without importing torch: choosing the method must not cost the 450 MB torch takes."""
    if "torch" in sys.modules:
        return Path(sys.modules["torch"].hub.get_dir())
    cache = os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache"))
    return Path(os.path.expanduser(os.environ.get("TORCH_HOME", os.path.join(cache, "torch")))) / "hub"


def resolve_method(method: str, model_repo: Path | None, model_name: str, view_dir: Path) -> tuple[str, Path | None]:
    """The method that will run and the demucs repo folder for it.

    ``auto`` means htdemucs when its weights are in ``model_repo`` (or, with no ``model_repo``, in
    the torch hub cache), else repet. ``htdemucs`` without weights is an error naming the key.
    """
    if model_repo is not None:
        repo = Path(model_repo) if _has_model_files(Path(model_repo), model_name) else None
    else:
        repo = hub_cache_repo(model_name, view_dir)
    if method == "htdemucs" and repo is None:
        raise StageError(f"remove_vocals.method is htdemucs but there are no {model_name} weights: "
                         f"remove_vocals.model_repo ({model_repo}) holds no {model_name}.yaml or {model_name}*.th"
                         + ("" if model_repo else " and the torch hub cache has none")
                         + "; point model_repo at a local demucs model folder, or set remove_vocals.method to auto or repet")
    if method == "auto":
        method = "htdemucs" if repo is not None else "repet"
    return method, (repo if method == "htdemucs" else None)


def separate(y: np.ndarray, sr: int, settings: dict) -> tuple[np.ndarray, np.ndarray]:
    if settings["method"] == "htdemucs":
        return demucs_separate(y, sr, settings["model_name"], settings["model_repo"], settings["segment_s"],
                               settings["device"])
    return repet_sim(y, sr)


# --------------------------------------------------------------------------- measures


def sdr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Signal-to-distortion ratio, ``10 log10(|ref|^2 / |ref - est|^2)``, over the common length."""
    n = min(len(reference), len(estimate))
    ref, est = reference[:n].astype(np.float64), estimate[:n].astype(np.float64)
    return float(10 * np.log10(max(np.sum(ref**2), 1e-12) / max(np.sum((ref - est) ** 2), 1e-12)))


def energy_per_second(x: np.ndarray, sr: int) -> list[float]:
    n = int(np.ceil(len(x) / sr))
    padded = np.pad(x.astype(np.float64), (0, n * sr - len(x)))
    return np.mean(padded.reshape(n, sr) ** 2, axis=1).astype(np.float32).tolist()


def reference_stems(row: dict, sr: int) -> tuple[np.ndarray | None, bool | None]:
    """The reference instrumental stem the row names (at ``sr``) and whether its vocal stem has any
    sound; ``(None, None)`` for videos without stems."""
    inst_path, vocal_path = (Path(row[c]) if row.get(c) else None for c in (REFERENCE_INSTRUMENTAL, REFERENCE_VOCALS))
    if inst_path is None or not inst_path.is_file():
        return None, None
    reference, _ = read_audio(inst_path, sample_rate=sr)
    has_vocals = None
    if vocal_path is not None and vocal_path.is_file():
        vocals, _ = read_audio(vocal_path, sample_rate=sr)
        has_vocals = bool(np.sqrt(np.mean(vocals.astype(np.float64) ** 2)) > 1e-3)
    return reference, has_vocals


# --------------------------------------------------------------------------- the stage


def remove_vocals_video(row: dict, settings: dict) -> list[dict]:
    sr = settings["sample_rate"]
    mix, _ = read_audio(row["path"], sample_rate=sr)
    instrumental, _vocals = separate(mix, sr, settings)
    _, residual = separate(instrumental, sr, settings)
    out_path = Path(settings["out_dir"]) / f"{row['id']}.wav"
    write_wav(out_path, instrumental, sr)
    reference, has_vocals = reference_stems(row, sr)
    mix_energy = energy_per_second(mix, sr)
    residual_energy = energy_per_second(residual, sr)
    return [{
        "path": row["path"],
        "instrumental_path": str(out_path),
        "method": settings["method"],
        "sample_rate": sr,
        "sdr_db": sdr_db(reference, instrumental) if reference is not None else None,
        "mixture_sdr_db": sdr_db(reference, mix) if reference is not None else None,
        "reference_has_vocals": has_vocals,
        "mixture_energy": mix_energy,
        "residual_vocal_energy": residual_energy,
        "residual_vocal_db": residual_vocal_db(residual_energy, mix_energy),
    }]


def _settings(cfg, out_dir: Path) -> dict:
    rv = cfg.remove_vocals
    method, repo = resolve_method(rv.method, rv.model_repo, rv.model_name, out_dir / "demucs-hub-cache")
    return {"method": method, "model_name": rv.model_name, "model_repo": str(repo) if repo else None,
            "segment_s": rv.segment_s,
            "device": rv.device, "sample_rate": cfg.audio.sample_rate, "out_dir": str(out_dir)}


def summarize(out: Manifest, settings: dict) -> dict:
    """Mean SDR before and after, separately for mixtures with and without a (known) voice."""
    rows = [r for r in out.iter_rows(["sdr_db", "mixture_sdr_db", "reference_has_vocals", "residual_vocal_db",
                                      "error"]) if r["error"] is None]
    result = {"method": settings["method"],
              "median_residual_vocal_db": float(np.median([r["residual_vocal_db"] for r in rows])) if rows else None}
    for label, flag in (("with_vocals", True), ("without_vocals", False)):
        scored = [r for r in rows if r["sdr_db"] is not None and r["reference_has_vocals"] is flag]
        result[label] = {
            "videos": len(scored),
            "mean_mixture_sdr_db": float(np.mean([r["mixture_sdr_db"] for r in scored])) if scored else None,
            "mean_sdr_db": float(np.mean([r["sdr_db"] for r in scored])) if scored else None,
        }
    return result


STAGE = Stage(
    name="remove_vocals",
    title="instrumentals",
    upstream="filter_static",
    schema=SCHEMA,
    process=remove_vocals_video,
    settings=_settings,
    accepts=lambda row: row.get("error") is None and bool(row.get("kept")),
    input_fields=("id", "path", "key"),  # filter_static's key covers the reference stems (from ingest's)
    description="separate vocals out (Demucs htdemucs, or REPET-SIM without weights); keep the instrumental",
    warmup=lambda: repet_sim(np.random.default_rng(0).standard_normal(8000).astype(np.float32), 8000),
    summarize=summarize,
)
