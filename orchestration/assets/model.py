"""Model assets: the trained model, its evaluation, the registered model, and a video given music by
the champion. Unpartitioned: each reads every batch's curated data (the codec is a pipeline stage:
see ``orchestration.assets.curation``).
"""

import json

import dagster as dg

from orchestration.assets.metadata import curves, figure, floats, link, tags
from orchestration.checks import suite_check_result, suite_check_spec
from orchestration.resources import MlflowTracking, TrainingLauncher, VmasConfig
from vmas.curation import STAGES

GROUP = "model"
# the losses the training report's history has, as the library plots them (vmas.training.reports.plot_curves)
TRAIN_CURVES = ["train/loss", "train/ce", "train/contrastive", "val/ce", "val/contrastive"]


@dg.asset(group_name=GROUP, deps=[list(STAGES)[-1]], kinds={"pytorch", "mlflow"},
          description="The trained VMAs model (model.pt): Lightning on every batch's tokens, through the training "
                      "launcher (`vmas train`). Starts afresh when the data or the settings changed.")
def train(context: dg.AssetExecutionContext, vmas: VmasConfig, mlflow: MlflowTracking,
          launcher: TrainingLauncher) -> dg.MaterializeResult:
    from vmas.layout import model_path, output_dir

    cfg = mlflow.apply(vmas.load())
    report = launcher.launch(cfg, tags(context))
    out = output_dir(cfg, "train")
    metadata = {"model": dg.MetadataValue.path(str(model_path(cfg).resolve())),
                "steps": dg.MetadataValue.int(int(report["steps"])), "clips": dg.MetadataValue.int(int(report["clips"])),
                "seconds": dg.MetadataValue.float(float(report["seconds"])),
                "data fingerprint": dg.MetadataValue.text((report.get("trained_on") or {}).get("fingerprint", "")),
                **floats(report.get("final", {}))}
    link(metadata, "MLflow run", mlflow.run_url(cfg, report.get("run_id")))
    metadata.update(curves(report.get("history") or [], TRAIN_CURVES))  # inline sparklines
    for name in ("training_curves", "validation_curves"):  # the full figures: on disk and in the MLflow run
        if (value := figure(out / f"{name}.png")) is not None:
            metadata[name.replace("_", " ")] = value
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(group_name=GROUP, deps=["train"], kinds={"mlflow"}, check_specs=[suite_check_spec("evaluate")],
          description="The evaluation on held-out videos: MV-Align, FAD, KL, retrieval R@1/R@10 and an HTML report "
                      "(`vmas evaluate`).")
def evaluate(context: dg.AssetExecutionContext, vmas: VmasConfig, mlflow: MlflowTracking):
    from vmas.evaluation.evaluate import evaluate as evaluate_model
    from vmas.layout import report_path
    from vmas.tracking.registry import champion
    from vmas.tracking.runs import mlflow_logger

    cfg = mlflow.apply(vmas.load())
    result = evaluate_model(cfg, logger=mlflow_logger(cfg, "evaluate", {"stage": "evaluate", **tags(context)}),
                            champion=champion(cfg), progress=False)
    metadata = {**floats({k: v for k, v in result["metrics"].items() if v is not None}),
                "clips": dg.MetadataValue.int(int(result["clips"])),
                "report": dg.MetadataValue.path(str(report_path(cfg).resolve()))}
    link(metadata, "MLflow run", mlflow.run_url(cfg, result.get("run_id")))
    yield dg.MaterializeResult(metadata=metadata)
    yield suite_check_result("evaluate", cfg)


@dg.asset(group_name=GROUP, deps=["evaluate"], kinds={"mlflow"},
          description="The registered model: a version of register.name in MLflow, promoted to champion when it "
                      "beats the current one on register.primary_metrics (`vmas register`).")
def register(context: dg.AssetExecutionContext, vmas: VmasConfig, mlflow: MlflowTracking) -> dg.MaterializeResult:
    from vmas.layout import evaluation_path
    from vmas.tracking.registry import register as register_model

    cfg = mlflow.apply(vmas.load())
    done = evaluation_path(cfg)
    result = register_model(cfg, json.loads(done.read_text()), done.parent)
    context.log.info("%s version %d: %s", cfg.register.name, result["version"], result["reason"])
    metadata = {"version": dg.MetadataValue.int(result["version"]),
                "promoted": dg.MetadataValue.bool(bool(result["promoted"])),
                "reason": dg.MetadataValue.text(result["reason"] or ""),
                "champion": dg.MetadataValue.int(int(result["champion"])) if result["champion"] else
                dg.MetadataValue.text("none"),
                "model": dg.MetadataValue.url(mlflow.model_url(cfg.register.name, result["version"]))}
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(group_name="generation", deps=["register"], kinds={"video"},
          description="Videos given music by the champion (`vmas generate`): the configured demo videos, or one "
                      "held-out video of the evaluation. Written to <artifacts>/generate/.")
def generate(context: dg.AssetExecutionContext, vmas: VmasConfig, mlflow: MlflowTracking) -> dg.MaterializeResult:
    from vmas.devices import select_device
    from vmas.generation.generate import GenerationSettings, generate as generate_music
    from vmas.layout import evaluation_path, output_dir
    from vmas.tracking.registry import load_model

    cfg = mlflow.apply(vmas.load())
    videos = list(vmas.demo_videos)
    if not videos:
        evaluation = json.loads(evaluation_path(cfg).read_text())
        videos = [evaluation["per_clip"][0]["source_path"]]
    g = cfg.generate
    package, name = load_model(cfg, None, select_device(g.device, "generate.device"))
    out = output_dir(cfg, "generate")
    results = generate_music(package, videos, out, GenerationSettings.from_config(g), model_name=name, progress=False)
    for r in results:
        context.log.info("%s (%.1f s of music)", r["video"], r["duration_s"])
    return dg.MaterializeResult(metadata={
        "videos": dg.MetadataValue.json([r["video"] for r in results]), "model": dg.MetadataValue.text(name),
        "folder": dg.MetadataValue.path(str(out.resolve())),
        **({"MV-Align": dg.MetadataValue.float(float(results[0]["mv_align"]))}
           if results and results[0].get("mv_align") is not None else {})})


model_assets = [train, evaluate, register, generate]
