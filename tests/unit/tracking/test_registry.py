"""Promotion logic, and the registry against a real MLflow SQLite store: versions, aliases, rollback."""

import json

import pytest
import torch

from vmas.codec import build_encodec, encodec_xp_config, save_codec
from vmas.config import RegisterConfig, load_config
from vmas.io import file_sha256
from vmas.layout import registration_path
from vmas.models.builders import build_vmas
from vmas.models.package import load_model_package
from vmas.tracking import registry
from vmas.tracking.registry import Decision, RegistryError, decide

POLICY = RegisterConfig(primary_metrics={"mv_align": "max", "fad": "min"}, require="all")


def test_decide_without_a_champion_promotes():
    assert decide({"mv_align": 0.2, "fad": 5.0}, None, POLICY) == Decision(True, "no champion yet")


def test_decide_needs_every_metric_under_require_all():
    champ = {"mv_align": 0.3, "fad": 4.0}
    assert decide({"mv_align": 0.4, "fad": 3.0}, champ, POLICY).promote
    worse_fad = decide({"mv_align": 0.4, "fad": 5.0}, champ, POLICY)
    assert not worse_fad.promote and "fad 5 does not beat 4 (min)" in worse_fad.reason
    assert decide({"mv_align": 0.4, "fad": 5.0}, champ, POLICY.model_copy(update={"require": "any"})).promote
    assert not decide({"mv_align": 0.3, "fad": 4.0}, champ, POLICY).promote  # a tie is no win


def test_decide_honours_the_margin_and_missing_metrics():
    champ = {"mv_align": 0.30, "fad": 4.0}
    margin = POLICY.model_copy(update={"min_improvement": 0.1})
    assert not decide({"mv_align": 0.32, "fad": 3.0}, champ, margin).promote  # +6.7 % < 10 %
    assert decide({"mv_align": 0.34, "fad": 3.5}, champ, margin).promote
    missing = decide({"mv_align": 0.9, "fad": None}, champ, POLICY)
    assert not missing.promote and "no value for fad" in missing.reason
    assert not decide({"mv_align": 0.9}, None, POLICY).promote


@pytest.fixture
def store(tmp_path, repo):
    """A demo config whose MLflow store is a fresh SQLite file, and a real codec + model package."""
    cfg = load_config(repo / "configs" / "demo.yaml", overrides=[f"paths.artifacts_dir={tmp_path / 'artifacts'}"])
    xp = encodec_xp_config(n_filters=4, dimension=cfg.codec.dimension, lstm=0)
    torch.manual_seed(0)
    codec_file = tmp_path / "compression_state_dict.bin"
    save_codec(build_encodec(xp).eval(), xp, codec_file)
    return cfg, codec_file


def _evaluation(cfg, codec_file, folder, seed: int, mv_align: float, fad: float) -> dict:
    """A trained-model file (random weights, real format) and the evaluation.json `vmas evaluate` would write."""
    from vmas.codec import load_codec
    from vmas.models.package import save_model

    folder.mkdir(parents=True)
    torch.manual_seed(seed)
    model = build_vmas(cfg, load_codec(codec_file).codebook_embeddings(), load_pretrained=False)
    model_file = folder / "model.pt"
    save_model(model, cfg, codec_file, file_sha256(codec_file), model_file)
    (folder / "report.html").write_text("<html>report</html>")
    return {"model": str(model_file), "model_sha256": file_sha256(model_file), "codec": str(codec_file),
            "metrics": {"mv_align": mv_align, "fad": fad, "kl": 1.0}, "clips": 8, "embedding": "musicnn-MTT",
            "run_id": None}


def test_register_promote_and_roll_back(store, tmp_path):
    cfg, codec_file = store
    first = registry.register(cfg, _evaluation(cfg, codec_file, tmp_path / "e1", 1, 0.20, 5.0), tmp_path / "e1")
    assert first == {"version": 1, "promoted": True, "reason": "no champion yet", "champion": 1, "new": True}

    worse = registry.register(cfg, _evaluation(cfg, codec_file, tmp_path / "e2", 2, 0.25, 6.0), tmp_path / "e2")
    assert worse["version"] == 2 and not worse["promoted"] and worse["champion"] == 1
    listed = {v["version"]: v for v in registry.versions(cfg)}
    assert listed[2]["aliases"] == ["challenger"] and listed[1]["aliases"] == ["champion"]
    assert listed[2]["promotion"].startswith("not promoted: mv_align 0.25 beats 0.2 (max); fad 6 does not beat 5")
    assert listed[2]["metrics"] == {"mv_align": 0.25, "fad": 6.0, "kl": 1.0}

    better = registry.register(cfg, _evaluation(cfg, codec_file, tmp_path / "e3", 3, 0.30, 4.0), tmp_path / "e3")
    assert better["promoted"] and registry.champion(cfg)["version"] == 3

    again = registry.register(cfg, _evaluation(cfg, codec_file, tmp_path / "e3b", 3, 0.30, 4.0), tmp_path / "e3b")
    assert again["version"] == 3 and not again["new"] and len(registry.versions(cfg)) == 3  # same weights

    assert registry.rollback(cfg) == {"version": 1, "champion": 1, "replaced": 3}
    assert registry.champion(cfg)["version"] == 1
    with pytest.raises(RegistryError, match="no earlier champion"):
        registry.rollback(cfg)
    registry.promote(cfg, 2, reason="listening test preferred it")
    assert registry.champion(cfg)["version"] == 2
    assert "listening test" in {v["version"]: v for v in registry.versions(cfg)}[2]["promotion"]
    with pytest.raises(RegistryError, match="no version 9"):
        registry.promote(cfg, 9)


def test_the_champion_downloads_as_a_loadable_package(store, tmp_path):
    cfg, codec_file = store
    evaluation = _evaluation(cfg, codec_file, tmp_path / "e1", 1, 0.2, 5.0)
    registry.register(cfg, evaluation, tmp_path / "e1")
    model_file, codec_path = registry.download(cfg, dst=tmp_path / "download")
    assert {p.name for p in model_file.parent.iterdir()} >= {"model.pt", "codec", "config.yaml", "package.json",
                                                              "report.html"}
    package = load_model_package(model_file, codec_path)
    assert package.sha256 == evaluation["model_sha256"] and package.config.profile == "demo"
    reference = torch.load(evaluation["model"], weights_only=False)["state_dict"]
    assert all(torch.equal(v, reference[k]) for k, v in package.model.state_dict().items())


def test_a_package_is_found_in_an_mlflow_model_and_in_an_older_version_folder(tmp_path):
    info = json.dumps({"model": "model.pt", "codec": "codec/c.bin"})
    older = tmp_path / "older"  # a version registered as a run's model/ folder
    older.mkdir()
    (older / "package.json").write_text(info)
    mlflow_model = tmp_path / "mlflow_model"  # a pyfunc model: the package is its artifact
    (mlflow_model / "artifacts" / "package").mkdir(parents=True)
    (mlflow_model / "artifacts" / "package" / "package.json").write_text(info)
    assert registry.package_files(older) == (older / "model.pt", older / "codec" / "c.bin")
    inner = mlflow_model / "artifacts" / "package"
    assert registry.package_files(mlflow_model) == (inner / "model.pt", inner / "codec" / "c.bin")
    with pytest.raises(RegistryError, match="no package.json in it"):
        registry.package_files(tmp_path)


def test_no_registry_yet(store):
    cfg, _ = store
    assert registry.champion(cfg) is None and registry.versions(cfg) == []


def _tokenize_manifest(cfg, clips: int) -> None:
    """A tokenize manifest (its real schema) with ``clips`` usable rows and one failed row; only the
    columns the decision reads are filled."""
    from vmas.curation import STAGES
    from vmas.layout import manifest_dir
    from vmas.manifest import Manifest

    rows = [{"id": f"v/{i:04d}", "input_id": f"v/{i:04d}", "key": "k", "error": None, "codec_sha256": "c"}
            for i in range(clips)]
    rows.append({"id": "w/0000", "input_id": "w/0000", "key": "k", "error": "unreadable: w.mp4"})
    Manifest(manifest_dir(cfg, "tokenize"), STAGES["tokenize"].schema).append(rows)


def test_retraining_is_due_when_enough_clips_arrived_since_the_champion(store, tmp_path):
    from vmas.training.retrain import retraining_decision

    cfg, codec_file = store
    cfg = cfg.model_copy(update={"retrain": cfg.retrain.model_copy(update={"min_new_clips": 4})})
    assert not retraining_decision(cfg).due  # no clips at all
    _tokenize_manifest(cfg, 3)
    first = retraining_decision(cfg)
    assert first.due and first.reason == "no champion yet; 3 clips to train on" and first.clips == 3
    evaluation = {**_evaluation(cfg, codec_file, tmp_path / "e1", 1, 0.2, 5.0),
                  "trained_on": {"clips": 3, "fingerprint": "f1"}}
    registry.register(cfg, evaluation, tmp_path / "e1")
    assert registry.champion(cfg)["train_clips"] == 3
    assert json.loads(registration_path(cfg).read_text())["version"] == 1
    _tokenize_manifest(cfg, 6)  # 3 more: not enough
    waiting = retraining_decision(cfg)
    assert not waiting.due and waiting.reason == ("3 new clips since champion version 1 was trained on 3; "
                                                  "retrain.min_new_clips is 4")
    _tokenize_manifest(cfg, 7)
    due = retraining_decision(cfg)
    assert due.due and due.champion_clips == 3 and due.data_key != waiting.data_key
