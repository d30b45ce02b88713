"""The registered model's code, as MLflow runs it (models-from-code): :func:`music_for_videos` in a pyfunc model.

MLflow executes this file by path when it loads ``models:/vmas@...`` (never import it): it hands the
generation function to :class:`vmas.tracking.pyfunc.MusicModel`, which loads the package and parses the
requests. It lives here, above both, because ``vmas.tracking`` may not import ``vmas.generation``.
"""

from pathlib import Path

import numpy as np

from vmas.config import GenerateConfig
from vmas.generation.generate import GenerationSettings, music_for_videos
from vmas.models.package import ModelPackage
from vmas.tracking.pyfunc import set_music_model


def music(package: ModelPackage, videos: list[Path], generate: GenerateConfig) -> list[np.ndarray]:
    """Music ``[C, samples]`` for each video, with ``generate``'s sampling settings and seed."""
    return music_for_videos(package, videos, GenerationSettings.from_config(generate))


set_music_model(music)
