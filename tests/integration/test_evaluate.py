"""`vmas evaluate` and `vmas register` on the demo's trained model, as `make demo` runs them:
metrics and a report, an MLflow champion with them attached, a loadable package, a listening test."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import torch

from vmas.layout import output_dir
from vmas.models.package import load_model_package
from vmas.models.sample import SamplingSettings, generate_codes
from vmas.tracking import registry
from vmas.tracking.runs import tracking_uri

pytestmark = pytest.mark.slow
METRICS = {"mv_align", "mv_align_reference", "mv_align_chance", "mv_align_reference_chance", "mv_align_codec", "fad",
           "fad_codec", "kl", "kl_codec", "retrieval_r1", "retrieval_r10"}


def _vmas(cfg, repo, *args, config=True):
    vmas = shutil.which("vmas") or str(Path(sys.executable).parent / "vmas")
    sets = ["--config", str(repo / "configs" / "demo.yaml"), "--set", f"paths.data_dir={cfg.paths.data_dir}",
            "--set", f"paths.artifacts_dir={cfg.paths.artifacts_dir}"] if config else []
    result = subprocess.run([vmas, *args, *sets], capture_output=True, text=True,
                            cwd=Path(cfg.paths.artifacts_dir).parent, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def evaluated(trained, repo):
    cfg, _ = trained
    result = _vmas(cfg, repo, "evaluate", "--no-progress")
    registered = json.loads(_vmas(cfg, repo, "register").stdout)
    return cfg, json.loads(result.stdout[result.stdout.index("{"):]), registered


def test_evaluate_writes_every_metric_and_a_report(evaluated):
    cfg, printed, _ = evaluated
    out = output_dir(cfg, "evaluate")
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == METRICS and all(math.isfinite(v) for v in metrics.values())
    assert 0 <= metrics["mv_align"] <= 1 and 0 <= metrics["retrieval_r1"] <= metrics["retrieval_r10"] <= 1
    result = json.loads((out / "evaluation.json").read_text())
    assert result["embedding"] == "musicnn-MTT" and result["clips"] == len(result["per_clip"]) >= 2
    assert all(Path(c["audio"]).is_file() for c in result["per_clip"])
    assert all((out / f).is_file() for f in result["figures"]) and len(result["figures"]) >= 2
    page = (out / "report.html").read_text()
    assert all(f in page for f in result["figures"]) and "mv_align" in page


def test_the_champion_holds_the_metrics_report_and_package(evaluated):
    cfg, _, registered = evaluated
    assert registered["promoted"] and registered["champion"] == registered["version"]
    champ = registry.champion(cfg)
    assert champ["version"] == registered["version"] and {"challenger", "champion"} <= set(champ["aliases"])
    client = mlflow.MlflowClient(tracking_uri(cfg))
    run = client.get_run(champ["run_id"])
    assert METRICS <= set(run.data.metrics) and run.data.tags["stage"] == "evaluate"
    logged = client.get_logged_model(champ["model_id"])  # an MLflow model of its training run
    assert client.get_run(logged.source_run_id).data.tags["stage"] == "train"
    files = {a.path for a in client.list_logged_model_artifacts(champ["model_id"], "artifacts/package")}
    assert {f"artifacts/package/{f}" for f in ("model.pt", "report.html", "config.yaml", "metrics.json")} <= files
    assert "evaluate/report.html" in {a.path for a in client.list_artifacts(champ["run_id"], "evaluate")}


def test_reruns_do_nothing_new(evaluated, repo):
    cfg, _, registered = evaluated
    wav = Path(json.loads((output_dir(cfg, "evaluate") / "evaluation.json").read_text())["per_clip"][0]["audio"])
    before = wav.stat().st_mtime_ns
    _vmas(cfg, repo, "evaluate", "--no-progress")
    again = json.loads(_vmas(cfg, repo, "register").stdout)
    assert wav.stat().st_mtime_ns == before and again["version"] == registered["version"] and not again["new"]
    shown = _vmas(cfg, repo, "registry", "show").stdout
    assert f"v{registered['version']} [challenger, champion]" in shown and "promoted: no champion yet" in shown


def test_the_registered_champion_generates(evaluated, tmp_path):
    cfg, _, _ = evaluated
    model_file, codec_path = registry.download(cfg, dst=tmp_path)
    package = load_model_package(model_file, codec_path)
    frames = torch.zeros(1, 3, cfg.video.frames, cfg.video.size, cfg.video.size)
    codes = generate_codes(package.model, frames, 10, SamplingSettings(), torch.Generator().manual_seed(0))
    assert codes.shape == (1, cfg.codec.n_q, 10)
    assert package.codec.decode(codes).shape[-1] == 10 * cfg.codec.sample_rate // cfg.codec.frame_rate


def test_a_listening_test_round_trip(evaluated, repo, tmp_path):
    cfg, _, _ = evaluated
    study = tmp_path / "study"
    _vmas(cfg, repo, "ab", "build", str(study), "--a", str(output_dir(cfg, "evaluate")), config=False)
    key = json.loads((study / "key.json").read_text())
    assert (study / "page" / "index.html").is_file() and len(key["pairs"]) >= 2
    model = next(s for s in key["pairs"]["p001"]["sides"].values() if s != "real music")
    answers = {pid: {"quality": next(side for side, s in p["sides"].items() if s == "real music"),
                     "alignment": "tie"} for pid, p in key["pairs"].items()}
    (tmp_path / "a.json").write_text(json.dumps({"study": key["study"], "rater": "r1", "answers": answers}))
    scores = json.loads(_vmas(cfg, repo, "ab", "score", str(study / "key.json"), str(tmp_path / "a.json"),
                              config=False).stdout)
    assert scores["questions"]["quality"]["systems"]["real music"]["rate"] == 1.0
    assert scores["questions"]["quality"]["systems"][model]["rate"] == 0.0
    assert scores["questions"]["alignment"]["systems"][model]["ties"] == len(key["pairs"])


def test_vmas_generate_uses_the_champion(evaluated, repo, tmp_path):
    """`vmas generate` on demo videos (a folder with one broken file in it): the champion by default,
    variants, every good video done, the broken one named and the command failing."""
    import av

    cfg, _, registered = evaluated
    inputs = tmp_path / "in"
    inputs.mkdir()
    source = sorted(Path(cfg.paths.data_dir).glob("*.mp4"))[3]  # a short dynamic video of the demo set
    shutil.copy(source, inputs / "clip.mp4")
    (inputs / "broken.mp4").write_text("not a video")
    vmas = shutil.which("vmas") or str(Path(sys.executable).parent / "vmas")
    result = subprocess.run([vmas, "generate", str(inputs), "-o", str(tmp_path / "out"), "--variants", "2",
                             "--no-progress", "--config", str(repo / "configs" / "demo.yaml"),
                             "--set", f"paths.artifacts_dir={cfg.paths.artifacts_dir}"],
                            capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 2 and "broken.mp4: not a readable media file" in result.stderr, result.stderr[-2000:]
    sidecars = [json.loads(p.read_text()) for p in sorted((tmp_path / "out").glob("*.json"))]
    assert [s["variant"] for s in sidecars] == [1, 2] and all(s["model"] == "models:/vmas@champion" for s in sidecars)
    for s in sidecars:
        with av.open(s["video"]) as out, av.open(str(inputs / "clip.mp4")) as original:
            assert [bytes(p) for p in out.demux(out.streams.video[0]) if p.size] == \
                [bytes(p) for p in original.demux(original.streams.video[0]) if p.size]
        with av.open(s["video"]) as out:  # reopened: the demux above read the whole file
            audio = out.streams.audio[0]
            assert abs(sum(f.samples for f in out.decode(audio)) / audio.sample_rate - s["duration_s"]) < 0.05
