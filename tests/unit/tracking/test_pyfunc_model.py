"""The registered champion as an MLflow pyfunc model: registered in a real SQLite store, loaded with
``mlflow.pyfunc.load_model("models:/vmas@champion")``, given real mp4s (paths, bytes, a serving request)."""

import base64
import json

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.entities import LoggedModelStatus

from vmas.codec import build_encodec, encodec_xp_config, load_codec, save_codec
from vmas.config import load_config
from vmas.generation.video_input import VideoInputError, inspect_video
from vmas.io import file_sha256
from vmas.layout import model_path
from vmas.media import write_mp4
from vmas.models.builders import build_vmas
from vmas.models.package import save_model
from vmas.tracking import registry
from vmas.tracking.pyfunc import MusicInputError, _rows
from vmas.tracking.runs import mlflow_logger, tracking_uri
from vmas.training.train import train

pytestmark = pytest.mark.slow
CHAMPION = "models:/vmas@champion"
SR = 32000
TINY = ["codec.cardinality=32", "model.music_decoder.dim=32", "model.music_decoder.num_layers=1",
        "model.music_decoder.num_heads=2", "model.video_encoder.embed_dim=8", "model.contrastive_dim=16",
        "generate.device=cpu", "generate.top_k=8"]


def _video(path, seconds: float, fps: int = 10, size=(80, 48)):
    """A real mp4 with a bar moving over it (``seconds`` long at ``fps``)."""
    w, h = size
    frames = [np.full((h, w, 3), 60, np.uint8) for _ in range(int(round(seconds * fps)))]
    for i, frame in enumerate(frames):
        frame[:, (i * 5) % w : (i * 5) % w + 6] = 230
    write_mp4(path, frames, fps)
    return path


def _samples(video) -> int:
    return round(inspect_video(video).duration_s * SR)


@pytest.fixture
def using_store():
    """Point MLflow's global URIs (where ``models:/`` resolves) at a store for the test, as a user of it does."""
    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()

    def use(cfg):
        mlflow.set_tracking_uri(tracking_uri(cfg))
        mlflow.set_registry_uri(tracking_uri(cfg))

    yield use
    mlflow.set_tracking_uri(before[0])
    mlflow.set_registry_uri(before[1])


@pytest.fixture(scope="module")
def champion(tmp_path_factory, repo):
    """A tiny untrained model (real format) registered as the champion; MLflow's URIs point at its store."""
    tmp = tmp_path_factory.mktemp("pyfunc")
    cfg = load_config(repo / "configs" / "demo.yaml", overrides=[f"paths.artifacts_dir={tmp / 'artifacts'}", *TINY])
    torch.manual_seed(0)
    xp = encodec_xp_config(n_filters=2, dimension=16, lstm=0, bins=32)
    codec = build_encodec(xp).train()
    codec(torch.randn(2, 1, SR) * 0.1)  # initialises the codebooks, as training does
    save_codec(codec.eval(), xp, tmp / "codec.bin")
    model = build_vmas(cfg, load_codec(tmp / "codec.bin").codebook_embeddings(), load_pretrained=False)
    save_model(model, cfg, tmp / "codec.bin", file_sha256(tmp / "codec.bin"), tmp / "model.pt")
    evaluation = {"model": str(tmp / "model.pt"), "model_sha256": file_sha256(tmp / "model.pt"),
                  "codec": str(tmp / "codec.bin"), "metrics": {"mv_align": 0.3, "fad": 4.0}, "clips": 2,
                  "embedding": "musicnn-MTT", "run_id": None}
    registry.register(cfg, evaluation, tmp)
    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(tracking_uri(cfg))
    mlflow.set_registry_uri(tracking_uri(cfg))
    yield cfg, tmp
    mlflow.set_tracking_uri(before[0])
    mlflow.set_registry_uri(before[1])


@pytest.fixture(scope="module")
def loaded(champion):
    return mlflow.pyfunc.load_model(CHAMPION)


def test_a_model_trained_under_mlflow_is_logged_from_its_training_run(token_set, tmp_path, using_store):
    """`vmas train` (4 steps, tracked) -> an evaluation run -> register: the champion is a LoggedModel whose
    source run is the training run, carrying the evaluation's metrics, and it gives a video music."""
    cfg = token_set.model_copy(update={
        "train": token_set.train.model_copy(update={"max_steps": 4, "checkpoint_every_n_steps": 4}),
        "generate": token_set.generate.model_copy(update={"device": "cpu", "top_k": 8})})
    train_logger = mlflow_logger(cfg, "train", {"stage": "train"})
    report = train(cfg, logger=train_logger, progress=False)
    train_logger.finalize("success")
    eval_logger = mlflow_logger(cfg, "evaluate", {"stage": "evaluate"})
    eval_logger.log_metrics({"mv_align": 0.3, "fad": 4.0})
    eval_logger.finalize("success")
    model = model_path(cfg)
    evaluation = {"model": str(model), "model_sha256": file_sha256(model), "codec": str(cfg.codec.pretrained),
                  "metrics": {"mv_align": 0.3, "fad": 4.0, "kl": 1.0}, "clips": 2, "embedding": "musicnn-MTT",
                  "run_id": eval_logger.run_id, "trained_on": report["trained_on"]}
    result = registry.register(cfg, evaluation, tmp_path)
    assert result["promoted"] and result["new"]

    client = mlflow.MlflowClient(tracking_uri(cfg))
    champ = registry.champion(cfg)
    logged = client.get_logged_model(champ["model_id"])
    assert logged.source_run_id == report["run_id"] == champ["training_run_id"]
    assert logged.status == LoggedModelStatus.READY and logged.name == "vmas"
    assert logged.model_id in {o.model_id for o in client.get_run(report["run_id"]).outputs.model_outputs}
    assert champ["run_id"] == eval_logger.run_id and champ["source"] == f"models:/{logged.model_id}"
    assert {m.key: m.value for m in logged.metrics} == {"mv_align": 0.3, "fad": 4.0, "kl": 1.0}
    assert {m.run_id for m in logged.metrics} == {eval_logger.run_id}

    using_store(cfg)
    video = _video(tmp_path / "clip.mp4", 1.3)
    out = mlflow.pyfunc.load_model(CHAMPION).predict(pd.DataFrame({"video": [str(video)]}))
    audio = np.asarray(out["audio"][0])
    assert out["sample_rate"][0] == SR and audio.shape == (_samples(video),) and np.isfinite(audio).all()


def test_the_mlflow_model_has_a_signature_an_example_and_pinned_requirements(champion, tmp_path):
    local = mlflow.artifacts.download_artifacts(CHAMPION, dst_path=str(tmp_path))
    spec = mlflow.models.Model.load(local)
    assert spec.signature.inputs.input_names() == ["video", "video_bytes"]
    assert spec.signature.outputs.input_names() == ["audio", "sample_rate", "duration_s"]
    assert [p.name for p in spec.signature.params] == ["seed"]
    example = json.loads((tmp_path / "input_example.json").read_text())  # the tiny mp4, base64
    assert example["columns"] == ["video_bytes"] and base64.b64decode(example["data"][0][0])[4:8] == b"ftyp"
    requirements = (tmp_path / "requirements.txt").read_text().split()
    assert {r.split("==")[0] for r in requirements} >= {"mlflow", "torch", "av", "decord", "pandas"}
    assert (tmp_path / "artifacts" / "package" / "package.json").is_file()
    assert not list(tmp_path.rglob("*.pkl"))  # logged as code: nothing to unpickle


def test_predict_gives_music_as_long_as_the_video_at_the_codec_rate(loaded, tmp_path):
    video = _video(tmp_path / "clip.mp4", 1.3)
    out = loaded.predict(pd.DataFrame({"video": [str(video)]}))
    assert list(out.columns) == ["audio", "sample_rate", "duration_s"] and len(out) == 1
    audio = np.asarray(out["audio"][0])
    assert out["sample_rate"][0] == SR and audio.dtype == np.float32
    assert audio.shape == (_samples(video),) and np.isfinite(audio).all() and np.abs(audio).max() > 0
    assert out["duration_s"][0] == pytest.approx(1.3, abs=0.05)

    again = loaded.predict({"video": str(video)})  # a dict; the same seed gives the same music
    assert np.array_equal(np.asarray(again["audio"][0]), audio)
    as_bytes = loaded.predict(pd.DataFrame({"video_bytes": [video.read_bytes()]}))
    assert np.array_equal(np.asarray(as_bytes["audio"][0]), audio)
    other_seed = loaded.predict({"video": str(video)}, params={"seed": 7})
    assert not np.array_equal(np.asarray(other_seed["audio"][0]), audio)


def test_several_videos_of_different_lengths_in_one_request(loaded, tmp_path):
    short, long = _video(tmp_path / "short.mp4", 0.6), _video(tmp_path / "long.mp4", 1.1)
    out = loaded.predict([{"video": str(short)}, {"video": str(long)}])  # records
    assert [len(a) for a in out["audio"]] == [_samples(short), _samples(long)]
    listed = loaded.predict({"video": [str(long), str(short)]})  # a dict of lists
    assert [len(a) for a in listed["audio"]] == [_samples(long), _samples(short)]


def test_a_json_request_as_mlflow_models_serve_parses_it(champion, tmp_path):
    """The scoring server's own parsing and schema check (what `mlflow models serve` does with a POST to
    /invocations): base64 bytes in the binary column, or paths; a seed parameter. One kind per request (a
    row without bytes in a request with bytes fails MLflow's base64 decoding)."""
    video = _video(tmp_path / "served.mp4", 0.8)
    encoded = base64.b64encode(video.read_bytes()).decode()
    by_bytes = {"dataframe_records": [{"video_bytes": encoded}, {"video_bytes": encoded}], "params": {"seed": 3}}
    out = mlflow.models.validate_serving_input(CHAMPION, json.dumps(by_bytes))
    assert len(out) == 2 and len(out["audio"][0]) == _samples(video)
    assert np.array_equal(np.asarray(out["audio"][0]), np.asarray(out["audio"][1]))  # each row seeded alone
    by_path = {"dataframe_split": {"columns": ["video"], "data": [[str(video)]]}, "params": {"seed": 3}}
    same = mlflow.models.validate_serving_input(CHAMPION, json.dumps(by_path))  # alone, not in a batch of 2
    assert np.allclose(np.asarray(same["audio"][0]), np.asarray(out["audio"][0]), atol=1e-4)


def test_the_stored_serving_example_runs(champion, tmp_path):
    local = mlflow.artifacts.download_artifacts(CHAMPION, dst_path=str(tmp_path))
    serving = mlflow.models.Model.load(local).get_serving_input(local)
    out = mlflow.models.validate_serving_input(local, serving)
    assert len(out) == 1 and out["sample_rate"][0] == SR and len(out["audio"][0]) == SR  # the 1 s example


def test_the_project_loader_still_loads_the_champion(champion):
    cfg, tmp = champion
    package, name = registry.load_model(cfg, None, "cpu")
    assert name == CHAMPION and package.sha256 == file_sha256(tmp / "model.pt")
    assert registry.champion(cfg)["training_run_id"] is None  # trained untracked: logged from a register run


def test_a_bad_request_names_the_problem(loaded, tmp_path):
    with pytest.raises(MusicInputError, match="exactly one of 'video'.*got neither"):
        loaded.predict(pd.DataFrame({"video": [""]}))
    with pytest.raises(MusicInputError, match="got \\['video', 'video_bytes'\\]"):
        loaded.predict(pd.DataFrame({"video": ["a.mp4"], "video_bytes": [b"x"]}))
    with pytest.raises(VideoInputError, match="missing.mp4: file not found"):
        loaded.predict({"video": str(tmp_path / "missing.mp4")})
    assert _rows(pd.DataFrame({"video": ["a.mp4", None], "video_bytes": [None, b"x"]})) == [
        {"video": "a.mp4"}, {"video_bytes": b"x"}]
