"""The registered model as an MLflow pyfunc model: a video in, its music out (``mlflow models serve`` serves it).

:func:`log_music_model` logs a registered package folder (``model.pt``, its codec, its training config, the
evaluation; see :mod:`vmas.tracking.registry`) as an MLflow model: a LoggedModel whose source run is the
training run, with the artifact ``package`` (that folder, as it is: :func:`vmas.tracking.registry.load_model`
reads it too), a signature, an input example and pinned requirements. The model is logged as code
(:data:`MODEL_CODE`, which hands :class:`MusicModel` the generation function), so nothing is pickled; the
serving environment needs ``vmas`` installed (``mlflow models serve ... --env-manager local`` from the
project's environment).

``predict`` takes a DataFrame with a ``video`` column (paths the server can read) or a ``video_bytes``
column (the file's bytes; base64 in a JSON request), or a dict / list of dicts of those; the optional
parameter ``seed``. It returns a DataFrame with one row per video: ``audio`` (the music, mono float samples
exactly as long as the video), ``sample_rate`` and ``duration_s``. The music is made by
:func:`vmas.generation.generate.music_for_videos` (what ``vmas generate`` muxes) with the registering
config's ``generate`` settings. ``vmas.tracking`` sits below ``vmas.generation`` (evaluation and training
log through it), so it does not import it: the models-from-code file, ``vmas/generation/mlflow_model.py``,
wires the two from above.
"""

from __future__ import annotations

import base64
import logging
import tempfile
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema
from mlflow.types.schema import Array

from vmas.errors import StageError

if TYPE_CHECKING:
    from vmas.config import GenerateConfig
    from vmas.models.package import ModelPackage

    MusicFunction = Callable[[ModelPackage, list[Path], GenerateConfig], list[np.ndarray]]

log = logging.getLogger(__name__)

PACKAGE_ARTIFACT = "package"  # the model's artifact: the registered package folder
VIDEO, VIDEO_BYTES = "video", "video_bytes"
# the file MLflow runs to build the model (models-from-code); a path, not an import: see the module docstring
MODEL_CODE = Path(__file__).parents[1] / "generation" / "mlflow_model.py"
# what predict imports beyond the standard library (audiocraft is installed --no-deps beside them, and vmas
# itself is not on PyPI: a serving environment is the project's own, `--env-manager local`)
RUNTIME_DISTRIBUTIONS = ("mlflow", "torch", "torchaudio", "numpy", "pandas", "scipy", "av", "decord", "librosa",
                         "soundfile", "pydantic", "pyyaml", "tqdm")


class MusicInputError(StageError):
    """A predict request that names no video (or both a path and bytes in one row)."""


def signature(default_seed: int = 0) -> ModelSignature:
    """Input: optional columns ``video`` (string: a path on the server) and ``video_bytes`` (binary: the
    file), one of them per row; parameter ``seed``. Output: ``audio`` (float samples), ``sample_rate``,
    ``duration_s``."""
    return ModelSignature(
        inputs=Schema([ColSpec(DataType.string, VIDEO, required=False),
                       ColSpec(DataType.binary, VIDEO_BYTES, required=False)]),
        outputs=Schema([ColSpec(Array(DataType.float), "audio"), ColSpec(DataType.long, "sample_rate"),
                        ColSpec(DataType.double, "duration_s")]),
        params=ParamSchema([ParamSpec("seed", DataType.long, default_seed)]))


def pip_requirements() -> list[str]:
    """``RUNTIME_DISTRIBUTIONS`` pinned to the installed versions (no inference: logging stays offline and fast)."""
    pinned = []
    for name in RUNTIME_DISTRIBUTIONS:
        try:
            pinned.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return pinned


def example_video(path: Path, seconds: float = 1.0, size: int = 64, fps: int = 8) -> Path:
    """A tiny real mp4 (a bar moving over grey, ``seconds`` long): the model's input example."""
    from vmas.media import write_mp4

    frames = [np.full((size, size, 3), 96, np.uint8) for _ in range(int(seconds * fps))]
    for i, frame in enumerate(frames):
        frame[:, (i * 6) % size : (i * 6) % size + 8] = 255
    write_mp4(path, frames, fps)
    return path


def log_music_model(client, package_dir: Path, run_id: str, experiment_id: str, name: str, generate: dict,
                    tags: dict[str, str]) -> str:
    """Log ``package_dir`` as the MLflow pyfunc model ``name`` of the run ``run_id`` (a LoggedModel in
    ``experiment_id``, an output of that run), through ``client`` (an ``MlflowClient``); returns its id.

    ``generate`` is the ``generate`` config section the model samples with (seed, guidance, ...); ``tags``
    go on the LoggedModel. Saved with ``mlflow.pyfunc.save_model`` and uploaded, rather than through
    ``log_model``, which would load the model and run its input example (a generation) while logging:
    logging only writes small files and copies the package.
    """
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.models import Model

    model = client.create_logged_model(experiment_id=experiment_id, name=name, source_run_id=run_id, tags=tags)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            example = pd.DataFrame({VIDEO_BYTES: [example_video(Path(tmp) / "example.mp4").read_bytes()]})
            local = Path(tmp) / "model"
            spec = Model(artifact_path=model.artifact_location, model_uuid=model.model_id, run_id=run_id,
                         model_id=model.model_id)
            mlflow.pyfunc.save_model(local, mlflow_model=spec, python_model=str(MODEL_CODE),
                                     artifacts={PACKAGE_ARTIFACT: str(package_dir)}, model_config=generate,
                                     signature=signature(int(generate.get("seed", 0))), input_example=example,
                                     pip_requirements=pip_requirements())
            client.log_model_artifacts(model.model_id, str(local))
        client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step=0)])
    except Exception:
        client.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
        raise
    client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    return model.model_id


def _rows(model_input: pd.DataFrame) -> list[dict]:
    """``model_input`` (a DataFrame, as MLflow's schema check leaves any input) as one dict per video; a cell
    holding a list (``{"video": [a, b]}`` arrives as one row with a list) gives one row per item."""
    rows = []
    for record in model_input.to_dict("records"):
        present = {k: v for k, v in record.items() if k in (VIDEO, VIDEO_BYTES) and _given(v)}
        if len(present) != 1:
            raise MusicInputError(f"each row needs exactly one of {VIDEO!r} (a path) or {VIDEO_BYTES!r} (the "
                                  f"file's bytes); got {sorted(present) or 'neither'}")
        (key, value), = present.items()
        items = list(value) if isinstance(value, (list, tuple, np.ndarray)) else [value]
        rows += [{key: item} for item in items]
    return rows


def _given(value) -> bool:
    """Whether a cell holds something (MLflow fills a column a row lacks with None or NaN)."""
    if isinstance(value, (list, tuple, np.ndarray, str, bytes)):
        return len(value) > 0
    return not pd.isna(value)


def _as_bytes(value) -> bytes:
    """Binary cells arrive as bytes (MLflow decodes base64 for the binary column); a str is base64 itself."""
    return base64.b64decode(value) if isinstance(value, str) else bytes(value)


def set_music_model(music: "MusicFunction") -> None:
    """Called by :data:`MODEL_CODE`: the model MLflow loads is a :class:`MusicModel` around ``music``."""
    mlflow.models.set_model(MusicModel(music))


class MusicModel(mlflow.pyfunc.PythonModel):
    """The champion as ``mlflow.pyfunc``: videos (paths or bytes) -> music (see the module docstring).

    ``music(package, videos, generate)`` makes the music: ``[C, samples]`` per video, as long as the video.
    """

    def __init__(self, music: "MusicFunction"):
        self.music = music

    def load_context(self, context) -> None:
        """Load the package once: the network and codec on ``generate.device`` (auto: a GPU when visible)."""
        from vmas.config import GenerateConfig
        from vmas.devices import resolve_dtype, select_device
        from vmas.models.package import load_model_package
        from vmas.tracking.registry import package_files

        self.generate = GenerateConfig.model_validate(context.model_config or {})
        device = select_device(self.generate.device, "generate.device")
        model_file, codec = package_files(Path(context.artifacts[PACKAGE_ARTIFACT]))
        self.package = load_model_package(model_file, codec, device=device,
                                          dtype=resolve_dtype(self.generate.precision, device))

    def predict(self, context, model_input, params: dict | None = None) -> pd.DataFrame:
        """Music for each row's video: ``audio`` (mono float32 samples, the video's length), ``sample_rate``,
        ``duration_s``."""
        generate = self.generate.model_copy(update={"seed": int((params or {}).get("seed", self.generate.seed))})
        sr = self.package.codec.sample_rate
        with tempfile.TemporaryDirectory() as tmp:
            paths = []
            for i, row in enumerate(_rows(model_input)):
                if VIDEO in row:
                    paths.append(Path(row[VIDEO]))
                else:
                    paths.append(Path(tmp) / f"input-{i}.mp4")
                    paths[-1].write_bytes(_as_bytes(row[VIDEO_BYTES]))
            music = self.music(self.package, paths, generate)
        audio = [m.mean(0).astype(np.float32) for m in music]  # [C, n] -> mono [n]
        return pd.DataFrame({"audio": audio, "sample_rate": [sr] * len(audio),
                             "duration_s": [a.shape[-1] / sr for a in audio]})
