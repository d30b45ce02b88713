"""Typed configuration: one pydantic model, named profiles, and ``--set a.b=c`` overrides.

A profile (``configs/demo.yaml``, ``configs/paper.yaml``) is a complete YAML file; ``params.yaml``
at the project root is the *active* profile that DVC reads and every command uses by default.
Validation is strict: an unknown key or a value of the wrong type is an error that names the key
path, the expected type and the file it came from.
"""

from __future__ import annotations

import difflib
import logging
import os
import types
import warnings
import typing
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal

import annotated_types
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vmas.io import atomic_write_text

PositiveFloat = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(gt=0)]
Share = Annotated[float, Field(ge=0, le=1)]
Triple = tuple[int, int, int]

GENRES = ("electronic", "rock", "folk", "ambient")
Genre = Literal["electronic", "rock", "folk", "ambient"]

ACTIVE_PARAMS_FILE = "params.yaml"
PROFILE_DIR_ENV = "VMAS_CONFIG_DIR"

log = logging.getLogger(__name__)


BUNDLED_PREFIX = "vmas:"  # codec.pretrained: vmas:<name> names a codec shipped in the package
BUNDLED_CODECS = Path(__file__).resolve().parent / "codec" / "weights"


def bundled_codec(value: str | Path) -> Path:
    """``codec.pretrained`` as a file path: ``vmas:<name>`` is ``vmas/codec/weights/<name>/`` in the package.

    The config keeps ``vmas:<name>`` as written, so params.yaml and fingerprints do not hold a
    machine's install path; any other value is returned unchanged.
    """
    text = str(value)
    if not text.startswith(BUNDLED_PREFIX):
        return Path(value)
    name = text[len(BUNDLED_PREFIX):]
    path = BUNDLED_CODECS / name / "compression_state_dict.bin"
    if not path.is_file():
        shipped = sorted(p.name for p in BUNDLED_CODECS.iterdir() if p.is_dir()) if BUNDLED_CODECS.is_dir() else []
        raise ValueError(f"{text}: no codec of that name ships with vmas (shipped: "
                         f"{', '.join(BUNDLED_PREFIX + n for n in shipped) or 'none'})")
    return path


class ConfigError(ValueError):
    """A configuration that cannot be used; ``problems`` holds one line per bad key."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"invalid configuration in {source}:\n" + "\n".join(f"  - {p}" for p in problems))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class PathsConfig(_Section):
    """Where things live, relative to the project root. Stage outputs never go inside ``data_dir``."""

    data_dir: Path = Path("data")
    artifacts_dir: Path = Path("artifacts")


class _DurationRange(_Section):
    """A section with ``min_duration_s`` and ``max_duration_s``, checked to be in order."""

    @model_validator(mode="after")
    def _durations_ordered(self):
        if self.min_duration_s > self.max_duration_s:
            raise ValueError(
                f"min_duration_s ({self.min_duration_s}) must not exceed max_duration_s ({self.max_duration_s})"
            )
        return self


class SynthConfig(_DurationRange):
    """The embedded synthetic music-video set (``vmas synth``)."""

    n: PositiveInt
    seed: Annotated[int, Field(ge=0)]
    min_duration_s: Annotated[float, Field(ge=2)]
    max_duration_s: Annotated[float, Field(le=600)]
    static_share: Share = Field(description="share of still or slideshow videos the filter must drop")
    vocal_share: Share = Field(description="share of videos with a singing-like vocal line mixed in")
    portrait_share: Share
    short_side: Annotated[int, Field(ge=64, le=1080, multiple_of=2)]
    fps_choices: Annotated[list[Literal[24, 25, 30]], Field(min_length=1)]
    sample_rate_choices: Annotated[list[Literal[32000, 44100, 48000]], Field(min_length=1)]
    genres: Annotated[list[Genre], Field(min_length=1)]


class AudioConfig(_Section):
    """The audio the model hears and produces."""

    sample_rate: Literal[32000] = 32000
    channels: Literal[1] = 1


class VideoConfig(_Section):
    """The frames the video encoder sees per clip (paper: 96 frames at 9.6 fps, 224 px)."""

    frames: PositiveInt
    fps: PositiveFloat
    size: Annotated[int, Field(ge=16)]


class ClipConfig(_Section):
    """Fixed-length training clips cut from each video."""

    seconds: PositiveFloat
    hop_seconds: PositiveFloat


class IngestConfig(_DurationRange):
    """Where raw videos come from, besides the folders and manifests named on the command line.

    Metadata tables (DISCO-10M, LAION-DISCO-12M, path lists) are streamed: every ``batch_rows`` rows
    of a source become one ingest batch (a Dagster partition), named after the source and the
    rows' position, so ingesting the same table again adds nothing. Rows whose source duration is
    outside ``[min_duration_s, max_duration_s]`` are dropped before anything is downloaded.
    """

    extensions: Annotated[list[str], Field(min_length=1)] | None = Field(
        default=None, description="file extensions taken as videos in a folder; null: every video container "
                                  "FFmpeg knows (mp4, mkv, webm, mov, avi, mpg, ogv, m4v, ts, ...)")
    media_root: Path | None = Field(default=None, description="folder holding already fetched media as "
                                                              "<youtube id>.<ext> (download takes it from there)")
    batch_rows: Annotated[int, Field(ge=1)] = 10_000
    min_duration_s: Annotated[float, Field(ge=0)] = 10.0
    max_duration_s: PositiveFloat = 600.0

    @model_validator(mode="before")
    @classmethod
    def _moved_downloader(cls, data: Any) -> Any:
        if isinstance(data, dict) and "downloader" in data:
            data = dict(data)
            value = data.pop("downloader")
            if value is not None:
                raise ValueError("ingest.downloader has moved: downloads are the `download` stage; set "
                                 "download.command instead")
        return data


YT_DLP = ("yt-dlp --quiet --no-warnings --no-progress --no-playlist --retries 0 --socket-timeout 30 "
          "--max-filesize {max_bytes} -f 'b[height<=720]/b' -o {out} {url}")


class DownloadConfig(_Section):
    """The ``download`` stage: fetch each ingested URL once, politely, resumably.

    ``command`` is a template (``{url}``, ``{out}``, ``{max_bytes}``, ``{timeout_s}``) run per URL;
    the default is yt-dlp. ``null`` uses the built-in HTTP(S)/fsspec downloader (direct media URLs).
    """

    command: str | None = YT_DLP
    workers: Annotated[int, Field(ge=1, le=256)] = 8  # downloads at once (threads)
    per_host_per_s: PositiveFloat = 2.0  # at most this many downloads start per second per host
    retries: Annotated[int, Field(ge=0, le=20)] = 3  # more tries after a transient failure ...
    backoff_s: Annotated[float, Field(ge=0)] = 2.0  # ... waiting this, doubled each time (with jitter)
    timeout_s: PositiveFloat = 600.0  # per file, all of it
    max_bytes: PositiveInt = 512 * 1024 * 1024  # per file


class FilterStaticConfig(_Section):
    """Drop static and slideshow videos (DISCO-MV cleaning): by motion within shots, or by mean frame similarity."""

    threshold: Share = 0.7
    sample_fps: PositiveFloat = 1.0
    max_frames: Annotated[int, Field(ge=2)] = Field(default=32, description="frames sampled, or windows for 'motion'")
    embedding: Literal["motion", "pixels", "histogram", "resnet18"] = "motion"
    encoder_weights: Path | None = Field(default=None, description="local torchvision state dict for 'resnet18'")
    motion_size: Annotated[int, Field(ge=32)] = Field(default=128, description="'motion': short side frames are read at")
    motion_span_s: PositiveFloat = Field(default=0.5, description="'motion': seconds in each window")
    moving_px: PositiveFloat = Field(default=1.0, description="'motion': flow (px at motion_size) that counts as moving")
    moving_area: Share = Field(default=0.004, description="'motion': share of the frame that must move in a window")


class RemoveVocalsConfig(_Section):
    """Vocal removal: Demucs htdemucs (keep no_vocals), or the REPET-SIM fallback when it has no weights."""

    method: Literal["auto", "htdemucs", "repet"] = "auto"
    model_name: str = "htdemucs"
    model_repo: Path | None = Field(default=None, description="local folder with demucs' <sig>.th and <name>.yaml")
    segment_s: PositiveFloat = 7.8
    device: Literal["auto", "cpu", "cuda"] = "auto"


class BeatsConfig(_Section):
    """Music beats (onsets), video beats (optical-flow peaks) and the per-token weights they give."""

    flow: Literal["farneback", "raft"] = "farneback"
    raft_weights: Path | None = None
    flow_size: Annotated[int, Field(ge=32)] = 160
    peak_window_s: PositiveFloat = Field(default=0.2, description="a video beat is a flow maximum within +-this")
    tolerance_s: PositiveFloat = Field(default=0.06, description="music and video beats this close overlap")
    weight_floor: Share = Field(default=0.5, description="weight of a timestep with no aligned beat")


class CodecConfig(_Section):
    """EnCodec: 32 kHz mono, ``n_q`` residual codebooks of ``cardinality`` entries at ``frame_rate`` Hz."""

    sample_rate: Literal[32000] = 32000
    n_q: PositiveInt = 4
    cardinality: PositiveInt = 2048
    frame_rate: PositiveInt = 50
    pretrained: Path | None = Field(default=None, description="local EnCodec checkpoint, or vmas:<name> for one "
                                    "shipped in the package (vmas:demo); None trains a small one")
    channels: PositiveInt = Field(description="SEANet base channels (64 in the released 32 kHz model)")
    dimension: PositiveInt = Field(default=128, description="latent (codebook) dimension (128 released)")
    lstm_layers: Annotated[int, Field(ge=0)] = 2
    device: Literal["auto", "cpu", "cuda"] = "auto"
    train: "CodecTrainConfig"
    gate: "CodecGateConfig"

    @field_validator("pretrained")
    @classmethod
    def _bundled(cls, value):
        """``vmas:<name>`` must name a codec shipped in the package (kept as written: see :func:`bundled_codec`)."""
        if value is not None:
            bundled_codec(value)
        return value


class CodecTrainConfig(_Section):
    """Training the demo codec (``vmas train_codec``) when no pretrained one is given."""

    max_steps: PositiveInt
    batch_size: PositiveInt = 8
    segment_s: PositiveFloat = 1.0
    lr: PositiveFloat = 2e-3
    holdout_share: Annotated[float, Field(gt=0, lt=1)] = Field(
        default=0.15, description="share of source videos held out for the quality gate (at least one)")
    l1_weight: Annotated[float, Field(ge=0)] = 0.1
    msspec_weight: Annotated[float, Field(ge=0)] = 2.0
    sisnr_weight: Annotated[float, Field(ge=0)] = 0.5
    commitment_weight: Annotated[float, Field(ge=0)] = 1.0
    seed: Annotated[int, Field(ge=0)] = 0


class CodecGateConfig(_Section):
    """Held-out reconstruction floors a trained codec must reach before anything tokenizes with it."""

    min_si_snr_db: float
    max_mel_distance: PositiveFloat
    min_onset_f: Share
    onset_tolerance_s: PositiveFloat = 0.05


class ShardConfig(_Section):
    """``vmas shard``: the training set as WebDataset tar shards (see :mod:`vmas.curation.shard`).

    ``url`` is any fsspec URL to write to (``s3://bucket/vmas/shards``, ``gs://...``, a local path);
    ``null`` writes under ``<artifacts>/shard``. ``max_bytes`` is the size a shard is closed at (a
    single larger clip still gets a shard of its own).
    """

    url: str | None = None
    max_bytes: PositiveInt = 500_000_000


class TrackingConfig(_Section):
    """MLflow: ``uri`` None means a SQLite store at ``<artifacts_dir>/mlflow.db``, artifacts beside it."""

    uri: str | None = None
    experiment: str = "vmas"
    device_stats: bool = Field(default=False, description="log Lightning's DeviceStatsMonitor metrics (GPU "
                                                          "memory and utilisation, CPU) with each training run")


class GenerateConfig(_Section):
    """Sampling settings of ``vmas generate`` and of the music ``vmas evaluate`` generates."""

    guidance: Annotated[float, Field(ge=0)] = Field(default=3.0, description="classifier-free guidance scale")
    temperature: Annotated[float, Field(ge=0)] = Field(default=1.0, description="0 samples greedily")
    top_k: Annotated[int, Field(ge=0)] = 250
    top_p: Share = Field(default=0.0, description="nucleus sampling; > 0 replaces top_k")
    seed: Annotated[int, Field(ge=0)] = 0
    batch_size: PositiveInt = 8
    device: str = Field(default="auto", description="auto, cpu, cuda or cuda:N")
    precision: Literal["auto", "fp32", "bf16"] = Field(default="auto", description="auto: bf16 on GPUs that have it")


class EvaluateConfig(_Section):
    """``vmas evaluate``: music for the held-out clips (the videos training held out) and its metrics."""

    max_clips: Annotated[int, Field(ge=0)] = Field(default=0, description="0 evaluates every held-out clip")
    embedding: str = Field(default="musicnn", description="FAD embedding / KL tagger: musicnn (bundled weights) "
                                                           "or torchscript:<local file>")
    motion_threshold: Share = Field(default=0.1, description="MV-Align: a video peak must reach this share "
                                                             "of the clip's largest motion")
    flow_size: PositiveInt = Field(default=160, description="short side (px) the flow is computed at")
    report_clips: Annotated[int, Field(ge=0)] = Field(default=4, description="clips plotted in the report")


class RegisterConfig(_Section):
    """The ``register`` stage (the MLflow model registry): every evaluated model becomes a version of ``name``
    with alias ``challenger``;
    it becomes ``champion`` when it beats the current one on ``primary_metrics`` (metric -> max|min)."""

    name: str = "vmas"
    primary_metrics: dict[str, Literal["max", "min"]] = {"mv_align": "max", "fad": "min"}
    require: Literal["all", "any"] = Field(default="all", description="beat the champion on all or any primary metric")
    min_improvement: Annotated[float, Field(ge=0)] = Field(default=0.0, description="relative margin a metric must "
                                                                                    "improve by")


class RetrainConfig(_Section):
    """When the orchestrator retrains: on ``cron`` (Dagster's schedule, UTC), and only when at least
    ``min_new_clips`` usable clips were curated since the champion's training data."""

    cron: str = Field(default="0 3 * * *", description="five-field cron, UTC")
    min_new_clips: Annotated[int, Field(ge=1)] = 100

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise ValueError(f"{value!r} is not a five-field cron expression (minute hour day month weekday)")
        return value


class VideoEncoderConfig(_Section):
    """Hiera-style hierarchical ViT; Q-pooling keeps time so the output is one feature per frame pair."""

    embed_dim: PositiveInt
    num_heads: PositiveInt
    stages: Annotated[list[PositiveInt], Field(min_length=1)]
    q_strides: list[Triple]
    patch_kernel: Triple = (3, 7, 7)
    patch_stride: Triple = (2, 4, 4)
    patch_padding: Triple = (1, 3, 3)
    mask_unit_size: Triple = Field(default=(1, 8, 8), description="local attention window (tokens) of stage 1")
    mask_unit_attn: list[bool] = Field(default=[True, True, False, False],
                                       description="per stage: attend within mask units (else globally)")
    mlp_ratio: PositiveFloat = 4.0
    pretrained: Path | None = Field(default=None, description="local Hiera checkpoint (e.g. Hiera-Base 16x224)")

    @model_validator(mode="after")
    def _one_stride_per_transition(self) -> "VideoEncoderConfig":
        if len(self.q_strides) != len(self.stages) - 1:
            raise ValueError(
                f"q_strides needs one (t, h, w) stride per stage transition: "
                f"{len(self.stages) - 1} for {len(self.stages)} stages, got {len(self.q_strides)}"
            )
        return self


class MusicDecoderConfig(_Section):
    """Autoregressive transformer over delayed codebooks, with cross-attention to video in every layer."""

    dim: PositiveInt
    num_layers: PositiveInt
    num_heads: PositiveInt
    hidden_scale: PositiveInt = 4
    cfg_dropout: Share = Field(default=0.1, description="share of samples trained without video (for CFG)")
    pretrained: Path | None = Field(default=None, description="local MusicGen LM state_dict.bin of the same shape")

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> "MusicDecoderConfig":
        if self.dim % self.num_heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by num_heads ({self.num_heads})")
        return self


class ModelConfig(_Section):
    video_encoder: VideoEncoderConfig
    music_decoder: MusicDecoderConfig
    contrastive_dim: PositiveInt = 256
    temperature: PositiveFloat = 0.07


class TrainConfig(_Section):
    """``vmas train``: Lightning over the tokenize manifest. ``contrastive_weight: 0`` and
    ``beat_weighting: false`` are the paper's two ablations."""

    batch_size: PositiveInt
    max_steps: PositiveInt
    lr: PositiveFloat
    contrastive_weight: Annotated[float, Field(ge=0)] = 0.1
    beat_weighting: bool = True
    precision: Literal["32", "bf16-mixed", "16-mixed", "auto"] = "32"
    warmup_steps: Annotated[int, Field(ge=0)] = 0
    weight_decay: Annotated[float, Field(ge=0)] = 0.01
    gradient_clip: Annotated[float, Field(ge=0)] = 1.0
    accumulate_grad_batches: PositiveInt = 1
    ema_decay: Annotated[float, Field(ge=0, lt=1)] = Field(default=0.0, description="0 disables the EMA weights")
    val_share: Annotated[float, Field(ge=0, lt=1)] = Field(default=0.1, description="share of videos held out")
    val_every_n_steps: PositiveInt = 100
    checkpoint_every_n_steps: PositiveInt = 100
    num_workers: Annotated[int, Field(ge=0)] = 2
    strategy: Literal["auto", "ddp", "fsdp"] = "auto"
    devices: str = Field(default="auto", description="Lightning devices: auto, a count, or a list like '0,1'")
    num_nodes: PositiveInt = Field(default=1, description="machines of a multi-node run (devices x num_nodes = "
                                                          "the world size torchrun gives)")
    accelerator: Literal["auto", "cpu", "gpu"] = "auto"
    seed: Annotated[int, Field(ge=0)] = Field(default=0, description="weight initialisation, batch order and "
                                              "in-step randomness (not the split: see split_seed)")
    split_seed: Annotated[int, Field(ge=0)] = Field(default=0, description="which videos are held out; kept apart "
                                                    "from seed so runs with other seeds are judged on the same clips")
    data: Literal["files", "shards"] = Field(default="files", description="files: one .npz and mp4 per clip, "
                                             "from the tokenize manifest (small sets); shards: the shard stage's "
                                             "WebDataset shards, streamed")
    shards: str | None = Field(default=None, description="where to read shards from (any fsspec URL, http(s) "
                                                         "too); null: shard.url")
    shuffle_buffer: PositiveInt = Field(default=256, description="clips shuffled together in each reader "
                                                                 "(memory: this many encoded clips per worker)")
    corrupt_shards: Literal["fail", "skip"] = Field(default="fail", description="a shard that cannot be read: "
                                                    "stop, or log it, count it and go on")

    @field_validator("devices", mode="before")
    @classmethod
    def _count_as_text(cls, value):
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value  # --set train.devices=8


# The ``register`` section is named after its stage; the name shadows ``ABCMeta.register`` (pydantic warns),
# a class method no config calls.
warnings.filterwarnings("ignore", message='Field name "register" in "Config" shadows', category=UserWarning)


class Config(_Section):
    """The whole configuration. Every section is required in a profile file."""

    profile: str
    paths: PathsConfig = PathsConfig()
    synth: SynthConfig
    audio: AudioConfig = AudioConfig()
    video: VideoConfig
    clip: ClipConfig
    ingest: IngestConfig = IngestConfig()
    download: DownloadConfig = DownloadConfig()
    filter_static: FilterStaticConfig = FilterStaticConfig()
    remove_vocals: RemoveVocalsConfig = RemoveVocalsConfig()
    beats: BeatsConfig = BeatsConfig()
    codec: CodecConfig
    model: ModelConfig
    train: TrainConfig
    shard: ShardConfig = ShardConfig()
    tracking: TrackingConfig = TrackingConfig()
    generate: GenerateConfig = GenerateConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    register: RegisterConfig = RegisterConfig()
    retrain: RetrainConfig = RetrainConfig()

    @model_validator(mode="after")
    def _consistent(self) -> "Config":
        problems = []
        clip_from_frames = self.video.frames / self.video.fps
        if abs(clip_from_frames - self.clip.seconds) > 1e-6:
            problems.append(
                f"video.frames / video.fps = {clip_from_frames:g} s must equal clip.seconds = {self.clip.seconds:g} s"
            )
        if self.codec.sample_rate % self.codec.frame_rate:
            problems.append("codec.sample_rate must be a multiple of codec.frame_rate")
        enc = self.model.video_encoder
        if self.video.frames % enc.patch_stride[0]:
            problems.append(f"video.frames ({self.video.frames}) must be divisible by the time patch stride")
        grid = self.video.size // enc.patch_stride[1]
        for i, (_, sh, sw) in enumerate(enc.q_strides):
            if sh != sw or grid % sh:
                problems.append(
                    f"model.video_encoder.q_strides[{i}] spatial stride {sh}x{sw} does not divide the {grid}x{grid} token grid"
                )
                break
            grid //= sh
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


# --------------------------------------------------------------------------- loading


def profile_dirs() -> list[Path]:
    """Folders searched for ``NAME.yaml`` when a profile is named: $VMAS_CONFIG_DIR, ./configs, the repo's."""
    dirs = [Path(os.environ[PROFILE_DIR_ENV])] if os.environ.get(PROFILE_DIR_ENV) else []
    dirs += [Path.cwd() / "configs", Path(__file__).resolve().parents[2] / "configs"]
    return list(dict.fromkeys(d.resolve() for d in dirs))


def available_profiles() -> list[str]:
    return sorted({p.stem for d in profile_dirs() if d.is_dir() for p in d.glob("*.yaml")})


def resolve_profile(name: str) -> Path:
    for d in profile_dirs():
        if (d / f"{name}.yaml").is_file():
            return d / f"{name}.yaml"
    raise ConfigError(
        f"profile {name!r}",
        [f"no file {name}.yaml in {', '.join(str(d) for d in profile_dirs())}; known: {', '.join(available_profiles()) or 'none'}"],
    )


def default_config_path() -> Path:
    """``./params.yaml`` (the active profile) when present, else the demo profile."""
    active = Path.cwd() / ACTIVE_PARAMS_FILE
    return active if active.is_file() else resolve_profile("demo")


def load_config(
    path: str | Path | None = None, profile: str | None = None, overrides: Iterable[str] = ()
) -> Config:
    """Read a profile file (or the named profile, or the active one), apply ``a.b=c`` overrides, validate."""
    if path is not None and profile is not None:
        raise ConfigError("command line", ["give either a config file or a profile name, not both"])
    source = Path(path) if path is not None else resolve_profile(profile) if profile else default_config_path()
    try:
        data = yaml.safe_load(source.read_text())
    except FileNotFoundError:
        raise ConfigError(str(source), ["file does not exist"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(str(source), [f"not valid YAML: {exc}"]) from None
    if not isinstance(data, dict):
        raise ConfigError(str(source), [f"the top level must be a mapping of sections, got {type(data).__name__}"])
    _rename_sections(data, str(source))
    overrides = list(overrides)
    for item in overrides:
        apply_override(data, item)
    label = str(source) + (f" with --set {' '.join(overrides)}" if overrides else "")
    return validate_config(data, label)


# Sections renamed so that a stage's parameters sit under the stage's own name: old name -> new name.
RENAMED_SECTIONS = {"registry": "register"}


def _rename_sections(data: dict, source: str) -> None:
    """Read a config written before a section was renamed: its old section moves to the new name (warned)."""
    for old, new in RENAMED_SECTIONS.items():
        if old in data:
            if new in data:
                raise ConfigError(source, [f"both {old!r} and {new!r} are given; {old!r} is the old name of {new!r}"])
            log.warning("%s: the config section %r is now called %r (the stage's name); please rename it", source,
                        old, new)
            data[new] = data.pop(old)


def apply_override(data: dict, item: str) -> None:
    """Set ``a.b.c=value`` in nested ``data``; the value is parsed as YAML (``0.5``, ``[1, 2]``, ``null``)."""
    key, sep, raw = item.partition("=")
    parts = key.strip().split(".")
    if parts[0] in RENAMED_SECTIONS:
        log.warning("--set %s: the section %r is now called %r", item, parts[0], RENAMED_SECTIONS[parts[0]])
        parts[0] = RENAMED_SECTIONS[parts[0]]
    if not sep or not all(parts):
        raise ConfigError("--set", [f"{item!r}: expected KEY.PATH=VALUE, e.g. filter_static.threshold=0.6"])
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError("--set", [f"{item!r}: value is not valid YAML: {exc}"]) from None
    node = data
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = ".".join(parts[: depth + 1])
            raise ConfigError("--set", [f"{item!r}: {where} is a {type(child).__name__}, not a section"])
        node = child
    node[parts[-1]] = value


def validate_config(data: dict[str, Any], source: str) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, [_describe(err) for err in exc.errors()]) from None


def use_profile(name: str, target: str | Path = ACTIVE_PARAMS_FILE) -> Config:
    """Make ``name`` the active profile: write its validated, complete form to ``params.yaml``."""
    cfg = load_config(profile=name)
    header = (
        f"# Active profile: {name} (written by `vmas config use {name}` from {resolve_profile(name).name}).\n"
        "# DVC reads its parameters from here; edit it for an experiment, or switch profiles again.\n"
    )
    atomic_write_text(Path(target), header + cfg.to_yaml())
    return cfg


# --------------------------------------------------------------------------- error messages


def _describe(err: dict[str, Any]) -> str:
    loc = [p for p in err["loc"] if p not in ("function-after",)]
    path = _dotted(loc)
    if err["type"] == "extra_forbidden":
        parent, name = loc[:-1], loc[-1]
        allowed = _allowed_keys(parent)
        hint = difflib.get_close_matches(str(name), allowed, n=1)
        suggestion = f" (did you mean {_dotted([*parent, hint[0]])!r}?)" if hint else ""
        return f"unknown key {path!r}{suggestion}; allowed here: {', '.join(allowed)}"
    if err["type"] == "missing":
        return f"{path}: missing required key (expected {_expected_type(loc)})"
    if err["type"] == "value_error" and not loc:
        return err["msg"].removeprefix("Value error, ")
    got = err.get("input")
    where = path or "(top level)"
    msg = err["msg"].removeprefix("Value error, ")
    return f"{where}: expected {_expected_type(loc)}, got {got!r} ({type(got).__name__}): {msg}"


def _dotted(loc: list[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _field_at(loc: list[Any]) -> tuple[Any, list[Any]]:
    """The annotation and field metadata found by walking ``loc`` down from :class:`Config`."""
    ann: Any = Config
    meta: list[Any] = []
    for part in loc:
        ann = _unwrap_optional(ann)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            field = ann.model_fields.get(str(part))
            if field is None:
                return None, []
            ann, meta = field.annotation, list(field.metadata)
        elif typing.get_origin(ann) in (list, tuple) and isinstance(part, int):
            args = typing.get_args(ann)
            ann = args[0] if typing.get_origin(ann) is list or len(args) == 2 else args[min(part, len(args) - 1)]
            ann, meta = _strip_annotated(ann)
        else:
            return ann, meta
    return ann, meta


def _strip_annotated(ann: Any) -> tuple[Any, list[Any]]:
    if typing.get_origin(ann) is Annotated:
        base, *extra = typing.get_args(ann)
        meta = []
        for e in extra:
            meta.extend(getattr(e, "metadata", [e]))
        return base, meta
    return ann, []


def _unwrap_optional(ann: Any) -> Any:
    args = [a for a in typing.get_args(ann) if a is not type(None)]
    if typing.get_origin(ann) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return ann


def _allowed_keys(parent: list[Any]) -> list[str]:
    ann, _ = _field_at(parent)
    ann = _unwrap_optional(ann)
    return list(ann.model_fields) if isinstance(ann, type) and issubclass(ann, BaseModel) else []


_BOUNDS = {
    annotated_types.Gt: ("gt", ">"),
    annotated_types.Ge: ("ge", ">="),
    annotated_types.Lt: ("lt", "<"),
    annotated_types.Le: ("le", "<="),
    annotated_types.MultipleOf: ("multiple_of", "a multiple of"),
}


def _expected_type(loc: list[Any]) -> str:
    ann, meta = _field_at(loc)
    if ann is None:
        return "a known key"
    bounds = []
    for m in meta:
        for kind, (attr, symbol) in _BOUNDS.items():
            if isinstance(m, kind):
                bounds.append(f"{symbol} {getattr(m, attr)}")
        if isinstance(m, annotated_types.MinLen):
            bounds.append(f"at least {m.min_length} item(s)")
    return _type_name(ann) + (f" ({', '.join(bounds)})" if bounds else "")


def _type_name(ann: Any) -> str:
    ann, _ = _strip_annotated(ann)
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in args)
    if origin is list:
        return f"a list of {_type_name(args[0])}"
    if origin is tuple:
        return "a list of " + str(len(args)) + " (" + ", ".join(_type_name(a) for a in args) + ")"
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return f"a section with keys {', '.join(ann.model_fields)}"
    if ann is Path:
        return "a path (str)"
    return getattr(ann, "__name__", str(ann))
