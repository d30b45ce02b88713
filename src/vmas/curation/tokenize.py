"""tokenize: EnCodec codes for every clip, with its beat weights and training video: the training set.

For each beats row it writes ``<artifacts>/tokenize/<video id>-<k>.npz`` holding

- ``codes``: ``[K, T]`` int16, ``K = codec.n_q`` codebooks, ``T = clip seconds x codec.frame_rate``,
  values in ``[0, codec.cardinality)``;
- ``beat_weights``: ``[T]`` float32, the beat-aligned loss weights of the same steps;

and a manifest row (the index) naming that file, the clip's training video and its audio. The
codec is ``codec.pretrained`` when set, else the demo codec ``train_codec`` published; its file
hash is part of every row's key, so another codec re-tokenizes everything.
"""

from __future__ import annotations

import multiprocessing
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import soundfile as sf

from vmas.errors import RowError, StageError
from vmas.io import atomic_path, file_sha256
from vmas.manifest import schema_with
from vmas.stage import Stage

SCHEMA = schema_with(
    pa.field("video_id", pa.string()),
    pa.field("video_path", pa.string()),
    pa.field("audio_path", pa.string()),
    pa.field("tokens_path", pa.string()),
    pa.field("num_codebooks", pa.int32()),
    pa.field("num_steps", pa.int32()),
    pa.field("token_rate", pa.int32()),
    pa.field("beat_weights", pa.list_(pa.float32())),  # [T], also in the .npz
    pa.field("codec_sha256", pa.string()),
)


@lru_cache(maxsize=2)
def _codec(path: str, device: str):
    import torch

    from vmas.codec import load_codec

    if multiprocessing.parent_process() is not None:
        torch.set_num_threads(1)  # one thread per worker process: the pool already fills the cores
    return load_codec(path, device=device)


def tokens_file(out_dir: Path, clip_id: str) -> Path:
    return out_dir / f"{clip_id.replace('/', '-')}.npz"


def tokenize_clip(row: dict, settings: dict) -> list[dict]:
    import torch

    from vmas.devices import select_device


    device = select_device(settings["device"], "codec.device")
    codec = _codec(settings["codec"], device)
    audio, sr = sf.read(row["audio_path"], dtype="float32", always_2d=True)
    if sr != codec.sample_rate:
        raise RowError("sample_rate", f"{row['audio_path']}: {sr} Hz, the codec takes {codec.sample_rate} Hz")
    wav = torch.from_numpy(audio.mean(axis=1))[None, None].to(device)
    codes = codec.encode(wav)[0].cpu().numpy()  # [K, T]
    weights = np.asarray(row["beat_weights"], dtype=np.float32)
    if codes.shape[1] != len(weights):
        raise RowError("length", f"{row['audio_path']}: {codes.shape[1]} code frames but {len(weights)} beat weights")
    path = tokens_file(Path(settings["out_dir"]), row["id"])
    with atomic_path(path) as tmp:
        np.savez(tmp, codes=codes.astype(np.int16), beat_weights=weights)
    return [{"video_id": row["video_id"], "video_path": row["video_path"], "audio_path": row["audio_path"],
             "tokens_path": str(path), "num_codebooks": int(codes.shape[0]), "num_steps": int(codes.shape[1]),
             "token_rate": int(round(codec.frame_rate)), "beat_weights": weights.tolist(),
             "codec_sha256": settings["codec_sha256"]}]


def _settings(cfg, out_dir: Path) -> dict:
    from vmas.codec.loading import resolve_codec_path


    path = resolve_codec_path(cfg)
    if path is None:
        raise StageError("tokenize: no codec. codec.pretrained is null and no demo codec has been trained yet: "
                         "run `vmas train_codec`, or set codec.pretrained to a local EnCodec checkpoint")
    codec = _codec(str(path), "cpu")
    c = cfg.codec
    found = (codec.sample_rate, round(codec.frame_rate), codec.num_codebooks, codec.cardinality)
    wanted = (c.sample_rate, c.frame_rate, c.n_q, c.cardinality)
    if found != wanted:
        raise StageError(f"tokenize: the codec at {path} has sample_rate/frame_rate/n_q/cardinality {found}, "
                         f"the config (codec.*) says {wanted}")
    if c.cardinality > np.iinfo(np.int16).max + 1:
        raise StageError(f"tokenize: codec.cardinality {c.cardinality} does not fit the int16 codes on disk")
    return {"codec": str(path), "codec_sha256": file_sha256(path), "device": c.device,
            "out_dir": str(out_dir)}


STAGE = Stage(
    name="tokenize",
    title="training tokens",
    upstream="beats",
    after=("train_codec",),  # the codec it encodes with
    schema=SCHEMA,
    process=tokenize_clip,
    settings=_settings,
    input_fields=("id", "audio_path", "key"),
    description="EnCodec codes per clip, with its beat weights and training video (the training set)",
    start_method="spawn",  # the parent has loaded the codec with torch
)
