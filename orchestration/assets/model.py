"""Model assets: the demo codec, the trained model, its evaluation, the registered model, and a
video given music by the champion. Unpartitioned: each reads every batch's curated data.
"""

import base64
import json
from pathlib import Path

import dagster as dg

from orchestration.checks import suite_check_result, suite_check_spec
from orchestration.resources import MlflowTracking, TrainingLauncher, VmasConfig

GROUP = "model"


def _image(path: Path) -> dg.MetadataValue:
    """A PNG shown inline in the asset's metadata (Dagster renders Markdown images from data URIs)."""
    data = base64.b64encode(path.read_bytes()).decode()
    return dg.MetadataValue.md(f"![{path.name}](data:image/png;base64,{data})")


def _link(metadata: dict, key: str, url: str | None) -> None:
    if url:
        metadata[key] = dg.MetadataValue.url(url)


def _floats(values: dict, prefix: str = "") -> dict:
    return {f"{prefix}{k}": dg.MetadataValue.float(float(v)) for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _tags(context: dg.AssetExecutionContext) -> dict[str, str]:
    return {"dagster_run_id": context.run.run_id, "orchestrator": "dagster"}


@dg.asset(group_name=GROUP, deps=["clip"], kinds={"pytorch", "mlflow"},
          description="The codec (EnCodec): trained on the clip instrumentals and gated on held-out clips, or the "
                      "pretrained one given as codec.pretrained (`vmas train_codec`).")
def train_codec(context: dg.AssetExecutionContext, vmas: VmasConfig, mlflow: MlflowTracking) -> dg.MaterializeResult:
    from vmas.codec.train_codec import output_dir, resolve_codec_path, train_codec as train
    from vmas.tracking.runs import mlflow_logger

    cfg = mlflow.apply(vmas.load())
    logger = mlflow_logger(cfg, "train_codec", {"stage": "train_codec", **_tags(context)}) \
        if cfg.codec.pretrained is None else None
    report = train(cfg, logger=logger, progress=False)
    metadata = {"codec": dg.MetadataValue.path(str(resolve_codec_path(cfg)))}
    if "metrics" in report:
        metadata.update(_floats(report["metrics"], "held-out "))
        metadata.update({"train clips": dg.MetadataValue.int(report["train_clips"]),
                         "steps": dg.MetadataValue.int(report["steps"])})
        _link(metadata, "MLflow run", mlflow.run_url(cfg, report.get("run_id")))
        if (output_dir(cfg) / "training_curves.png").is_file():
            metadata["training curves"] = _image(output_dir(cfg) / "training_curves.png")
    else:
        metadata["pretrained"] = dg.MetadataValue.text(report.get("skipped", ""))
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(group_name=GROUP, deps=["tokenize"], kinds={"pytorch", "mlflow"},
          description="The trained VMAs model (model.pt): Lightning on every batch's tokens, through the training "
                      "launcher (`vmas train`). Starts afresh when the data or the settings changed.")
def train(context: dg.AssetExecutionContext, vmas: VmasConfig, mlflow: MlflowTracking,
          launcher: TrainingLauncher) -> dg.MaterializeResult:
    from vmas.training.train import model_path, output_dir

    cfg = mlflow.apply(vmas.load())
    report = launcher.launch(cfg, _tags(context))
    out = output_dir(cfg)
    metadata = {"model": dg.MetadataValue.path(str(model_path(cfg).resolve())),
                "steps": dg.MetadataValue.int(int(report["steps"])), "clips": dg.MetadataValue.int(int(report["clips"])),
                "seconds": dg.MetadataValue.float(float(report["seconds"])),
                "data fingerprint": dg.MetadataValue.text((report.get("trained_on") or {}).get("fingerprint", "")),
                **_floats(report.get("final", {}))}
    _link(metadata, "MLflow run", mlflow.run_url(cfg, report.get("run_id")))
    for name in ("training_curves.png", "validation_curves.png"):
        if (out / name).is_file():
            metadata[name.removesuffix(".png").replace("_", " ")] = _image(out / name)
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(group_name=GROUP, deps=["train"], kinds={"mlflow"}, check_specs=[suite_check_spec("evaluate")],
          description="The evaluation on held-out videos: MV-Align, FAD, KL, retrieval R@1/R@10 and an HTML report "
                      "(`vmas evaluate`).")
def evaluate(context: dg.AssetExecutionContext, vmas: VmasConfig, mlflow: MlflowTracking):
    from vmas.evaluation.evaluate import evaluate as evaluate_model, output_dir
    from vmas.tracking.registry import champion
    from vmas.tracking.runs import mlflow_logger

    cfg = mlflow.apply(vmas.load())
    result = evaluate_model(cfg, logger=mlflow_logger(cfg, "evaluate", {"stage": "evaluate", **_tags(context)}),
                            champion=champion(cfg), progress=False)
    metadata = {**_floats({k: v for k, v in result["metrics"].items() if v is not None}),
                "clips": dg.MetadataValue.int(int(result["clips"])),
                "report": dg.MetadataValue.path(str((output_dir(cfg) / "report.html").resolve()))}
    _link(metadata, "MLflow run", mlflow.run_url(cfg, result.get("run_id")))
    yield dg.MaterializeResult(metadata=metadata)
    yield suite_check_result("evaluate", cfg)


@dg.asset(group_name=GROUP, deps=["evaluate"], kinds={"mlflow"},
          description="The registered model: a version of registry.name in MLflow, promoted to champion when it "
                      "beats the current one on registry.primary_metrics (`vmas register`).")
def register(context: dg.AssetExecutionContext, vmas: VmasConfig, mlflow: MlflowTracking) -> dg.MaterializeResult:
    from vmas.evaluation.evaluate import output_dir
    from vmas.tracking.registry import register as register_model

    cfg = mlflow.apply(vmas.load())
    result = register_model(cfg, json.loads((output_dir(cfg) / "evaluation.json").read_text()), output_dir(cfg))
    context.log.info("%s version %d: %s", cfg.registry.name, result["version"], result["reason"])
    metadata = {"version": dg.MetadataValue.int(result["version"]),
                "promoted": dg.MetadataValue.bool(bool(result["promoted"])),
                "reason": dg.MetadataValue.text(result["reason"] or ""),
                "champion": dg.MetadataValue.int(int(result["champion"])) if result["champion"] else
                dg.MetadataValue.text("none"),
                "model": dg.MetadataValue.url(mlflow.model_url(cfg.registry.name, result["version"]))}
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(group_name="generation", deps=["register"], kinds={"video"},
          description="Videos given music by the champion (`vmas generate`): the configured demo videos, or one "
                      "held-out video of the evaluation. Written to <artifacts>/generate/.")
def generate(context: dg.AssetExecutionContext, vmas: VmasConfig, mlflow: MlflowTracking) -> dg.MaterializeResult:
    from vmas.codec.train_codec import select_device
    from vmas.evaluation.evaluate import output_dir
    from vmas.generation.generate import GenerationSettings, generate as generate_music
    from vmas.generation.package import load_model

    cfg = mlflow.apply(vmas.load())
    videos = list(vmas.demo_videos)
    if not videos:
        evaluation = json.loads((output_dir(cfg) / "evaluation.json").read_text())
        videos = [evaluation["per_clip"][0]["source_path"]]
    g = cfg.generate
    package, name = load_model(cfg, None, select_device(g.device))
    out = Path(cfg.paths.artifacts_dir) / "generate"
    results = generate_music(package, videos, out, GenerationSettings.from_config(g), model_name=name, progress=False)
    for r in results:
        context.log.info("%s (%.1f s of music)", r["video"], r["duration_s"])
    return dg.MaterializeResult(metadata={
        "videos": dg.MetadataValue.json([r["video"] for r in results]), "model": dg.MetadataValue.text(name),
        "folder": dg.MetadataValue.path(str(out.resolve())),
        **({"MV-Align": dg.MetadataValue.float(float(results[0]["mv_align"]))}
           if results and results[0].get("mv_align") is not None else {})})


model_assets = [train_codec, train, evaluate, register, generate]
