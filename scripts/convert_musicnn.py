"""Port musicnn's pretrained TensorFlow checkpoints (musicnn 0.1.0, ISC licence) to the PyTorch ``Musicnn``.

musicnn needs TensorFlow and numpy < 2, so it lives in its own virtual environment outside the repository
(its wheel pins numpy < 1.17, hence ``--no-deps``):

    python3.11 -m venv /tmp/tfenv
    /tmp/tfenv/bin/pip install tensorflow-cpu==2.15.1 'numpy<2' librosa==0.11.0 soundfile
    /tmp/tfenv/bin/pip install --no-deps musicnn==0.1.0

Three stages; ``export`` and ``reference`` run in that environment (numpy and TensorFlow, no torch), ``pack``
runs in the repository's environment (torch, no TensorFlow):

    /tmp/tfenv/bin/python scripts/convert_musicnn.py --stage export      # checkpoints -> artifacts/musicnn/*.npz
    .venv/bin/python scripts/convert_musicnn.py --stage pack             # npz -> src/vmas/evaluation/weights/*.pt
    /tmp/tfenv/bin/python scripts/convert_musicnn.py --stage reference   # TF outputs -> tests/fixtures/

``export`` reads each checkpoint's variables (the Adam slots left out), renames them to ``Musicnn``'s parameter
names and transposes the kernels to PyTorch's layout. ``pack`` loads them into ``Musicnn`` (strictly: every
parameter and buffer must be there) and saves ``{"format", "name", "source", "labels", "state_dict"}`` in float32.
``reference`` runs musicnn's own ``extractor`` (and its graph, for the penultimate features the extractor gets
wrong after the first window) on a deterministic test signal and keeps its log-mel input, taggram and penultimate
features for ``tests/unit/evaluation/test_musicnn.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
EXPORT_DIR = REPO / "artifacts" / "musicnn"
WEIGHTS_DIR = REPO / "src" / "vmas" / "evaluation" / "weights"
REFERENCE = REPO / "tests" / "fixtures" / "musicnn_reference.npz"
MODELS = {"MTT_musicnn": "musicnn_mtt", "MSD_musicnn": "musicnn_msd"}  # same architecture, different tags

# TensorFlow layer (in the order build_musicnn creates them) -> Musicnn module
LAYERS = {
    "batch_normalization": "input_bn",
    "conv2d": "timbral_convs.0", "batch_normalization_1": "timbral_bns.0",
    "conv2d_1": "timbral_convs.1", "batch_normalization_2": "timbral_bns.1",
    "conv2d_2": "temporal_convs.0", "batch_normalization_3": "temporal_bns.0",
    "conv2d_3": "temporal_convs.1", "batch_normalization_4": "temporal_bns.1",
    "conv2d_4": "temporal_convs.2", "batch_normalization_5": "temporal_bns.2",
    "conv2d_5": "midend_convs.0", "batch_normalization_6": "midend_bns.0",
    "conv2d_6": "midend_convs.1", "batch_normalization_7": "midend_bns.1",
    "conv2d_7": "midend_convs.2", "batch_normalization_8": "midend_bns.2",
    "batch_normalization_9": "pool_bn",
    "dense": "dense", "batch_normalization_10": "dense_bn",
    "dense_1": "classifier",
}
BN_NAMES = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}


def torch_layout(tf_name: str, value: np.ndarray) -> tuple[str, np.ndarray]:
    """A TensorFlow variable ``layer/var`` -> (``Musicnn`` parameter name, value in PyTorch's layout)."""
    layer, var = tf_name.split("/")
    module = LAYERS[layer]
    if layer.startswith("batch_normalization"):
        return f"{module}.{BN_NAMES[var]}", value
    if var == "bias":
        return f"{module}.bias", value
    if layer.startswith("dense"):  # [in, out] -> [out, in]
        return f"{module}.weight", value.T
    if module.startswith("midend"):  # [7, C_in, 1, C_out] (a 2-D conv spanning all channels) -> Conv1d [C_out, C_in, 7]
        return f"{module}.weight", value[:, :, 0, :].transpose(2, 1, 0)
    return f"{module}.weight", value.transpose(3, 2, 0, 1)  # [kh, kw, in, out] -> [out, in, kh, kw]


def musicnn_dir() -> Path:
    import musicnn

    return Path(musicnn.__file__).resolve().parent


def export() -> None:
    """Checkpoint -> ``EXPORT_DIR/<name>.npz`` of renamed, transposed float32 arrays, plus labels and source."""
    import tensorflow as tf
    from musicnn import configuration

    EXPORT_DIR.mkdir(parents=True, exist_ok=True)
    for model, name in MODELS.items():
        # the checkpoint file inside the package points at the author's machine: read the prefix directly
        reader = tf.compat.v1.train.NewCheckpointReader(str(musicnn_dir() / model) + "/")
        arrays = {}
        for var in sorted(reader.get_variable_to_shape_map()):
            if "Adam" in var or var.startswith("beta"):  # optimiser state, beta1_power / beta2_power
                continue
            key, value = torch_layout(var, reader.get_tensor(var))
            arrays[key] = np.ascontiguousarray(value, dtype=np.float32)
        labels = configuration.MTT_LABELS if model.startswith("MTT") else configuration.MSD_LABELS
        meta = {"name": f"musicnn-{model.split('_')[0]}", "source": f"musicnn 0.1.0 {model}", "labels": labels}
        np.savez(EXPORT_DIR / f"{name}.npz", __meta__=np.array(json.dumps(meta)), **arrays)
        print(f"{model}: {len(arrays)} arrays, {sum(a.size for a in arrays.values())} values -> {name}.npz")


def pack() -> None:
    """``EXPORT_DIR/<name>.npz`` -> ``WEIGHTS_DIR/<name>.pt`` through ``Musicnn.load_state_dict(strict=True)``."""
    import torch

    sys.path.insert(0, str(REPO / "src"))
    from vmas.evaluation.musicnn import WEIGHTS_FORMAT, Musicnn

    for name in MODELS.values():
        with np.load(EXPORT_DIR / f"{name}.npz") as npz:
            meta = json.loads(str(npz["__meta__"]))
            arrays = {k: torch.from_numpy(npz[k].copy()) for k in npz.files if k != "__meta__"}
        model = Musicnn(n_classes=len(meta["labels"]))
        state = model.state_dict()
        missing = sorted(set(state) - set(arrays) - {k for k in state if k.endswith("num_batches_tracked")})
        unexpected = sorted(set(arrays) - set(state))
        if missing or unexpected:
            raise SystemExit(f"{name}: missing {missing}, unexpected {unexpected}")
        for key, value in arrays.items():
            if value.shape != state[key].shape:
                raise SystemExit(f"{name}: {key} has shape {tuple(value.shape)}, "
                                 f"Musicnn wants {tuple(state[key].shape)}")
        model.load_state_dict({**state, **arrays})
        package = {"format": WEIGHTS_FORMAT, **meta,
                   "state_dict": {k: v.clone() for k, v in model.state_dict().items()}}
        out = WEIGHTS_DIR / f"{name}.pt"
        WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
        torch.save(package, out)
        print(f"{name}: {sum(v.numel() for v in arrays.values())} values -> {out} ({out.stat().st_size} bytes)")


# tests/unit/evaluation/test_musicnn.py calls this function too; the reference file keeps the signal's sha256.
def reference_signal(seconds: float = 10.0, sample_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """Deterministic ``[n]`` int16 music-like signal: decaying harmonic notes on a 120 bpm eighth-note grid, a low
    kick on the beats and noise bursts (hi-hats) off the beats, peaking near -2 dBFS."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate))
    y = np.zeros(n)
    step = int(0.25 * sample_rate)  # an eighth note at 120 bpm
    seg = np.arange(sample_rate) / sample_rate  # each event lasts at most 1 s
    for k, start in enumerate(range(0, n, step)):
        m = min(len(seg), n - start)
        t = seg[:m]
        f0 = 110.0 * 2 ** (rng.integers(0, 25) / 12)
        note = sum(np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 2 * np.pi)) / h for h in range(1, 5))
        y[start:start + m] += 0.2 * np.exp(-t / rng.uniform(0.08, 0.4)) * note
        if k % 2 == 0:  # kick: a falling low sine
            y[start:start + m] += 0.5 * np.exp(-t / 0.12) * np.sin(2 * np.pi * (50 * t + 8 * (1 - np.exp(-t / 0.05))))
        else:  # hi-hat: a short noise burst
            y[start:start + m] += 0.15 * np.exp(-t / 0.03) * rng.standard_normal(m)
    y *= 0.8 / np.abs(y).max()
    return np.round(y * 32767).astype(np.int16)


def tf_outputs(model: str, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """musicnn's TensorFlow graph and checkpoint, built and restored as its ``extractor`` does, on ``[W, 187, 96]``
    -> (taggram ``[W, 50]``, penultimate ``[W, 200]``), one window per run as the extractor feeds them."""
    import tensorflow as tf
    from musicnn import models

    tf.compat.v1.disable_eager_execution()
    tf.compat.v1.reset_default_graph()
    with tf.name_scope("model"):
        x = tf.compat.v1.placeholder(tf.float32, [None, 187, 96])
        is_training = tf.compat.v1.placeholder(tf.bool)
        y, *_, penultimate = models.define_model(x, is_training, model, 50)
        probabilities = tf.nn.sigmoid(y)
    with tf.compat.v1.Session() as sess:
        tf.compat.v1.train.Saver().restore(sess, str(musicnn_dir() / model) + "/")
        runs = [sess.run([probabilities, penultimate], feed_dict={x: w[None], is_training: False}) for w in windows]
    return np.concatenate([r[0] for r in runs]), np.concatenate([r[1] for r in runs])


def reference() -> None:
    """musicnn on :func:`reference_signal` -> ``REFERENCE``: its log-mel input, per model its taggram and penultimate.

    The taggram is ``musicnn.extractor.extractor``'s own. Its ``features["penultimate"]`` repeats the first
    window's row for every window (the loop over later batches concatenates a stale variable), so the penultimate
    here comes from the same graph run on the same windows (:func:`tf_outputs`); both agree on the first window and
    on the whole taggram, which is checked here.
    """
    import soundfile as sf
    from musicnn.extractor import batch_data, extractor

    signal = reference_signal()
    out = {"signal_sha256": np.array(hashlib.sha256(signal.tobytes()).hexdigest()), "sample_rate": np.array(16000)}
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "signal.wav"
        sf.write(wav, signal, 16000, subtype="PCM_16")
        windows, out["log_mel"] = batch_data(str(wav), 187, 187)  # what extractor feeds the network
        for model, prefix in (("MTT_musicnn", "mtt"), ("MSD_musicnn", "msd")):
            taggram, labels, features = extractor(str(wav), model=model, extract_features=True)
            graph_taggram, penultimate = tf_outputs(model, windows)
            assert np.array_equal(graph_taggram, taggram), (model, np.abs(graph_taggram - taggram).max())
            assert np.array_equal(penultimate[0], features["penultimate"][0]), model
            out[f"{prefix}_taggram"], out[f"{prefix}_penultimate"] = taggram, penultimate
            out[f"{prefix}_labels"] = np.array(labels)
    out["log_mel"] = out["log_mel"].astype(np.float32)
    REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(REFERENCE, **out)
    print({k: (v.shape, v.dtype) for k, v in out.items()}, REFERENCE.stat().st_size, "bytes")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stage", choices=["export", "pack", "reference"], required=True)
    {"export": export, "pack": pack, "reference": reference}[parser.parse_args().stage]()
