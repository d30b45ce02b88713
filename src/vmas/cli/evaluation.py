"""``vmas evaluate``, ``vmas register``, ``vmas registry show|promote|rollback`` and ``vmas ab build|score``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from vmas.cli.options import ConfigFile, Overrides, Profile, Progress, Track, resolve
from vmas.errors import StageError
from vmas.layout import EVALUATION_FILE, evaluation_path, report_path

registry_app = typer.Typer(help="The MLflow model registry: versions, the champion, promotion and rollback.",
                           no_args_is_help=True)
ab_app = typer.Typer(help="Blind pairwise listening tests: build the page raters use, score their answers.",
                     no_args_is_help=True)


def evaluate_command(
    model: Annotated[Optional[Path], typer.Option(help="model.pt to evaluate (default: <artifacts>/train/model.pt).",
                                                  dir_okay=False)] = None,
    progress: Progress = True,
    track: Track = True,
    config: ConfigFile = None,
    profile: Profile = None,
    set_: Overrides = None,
) -> None:
    """Generate music for the held-out clips and score it: MV-Align, FAD, KL, retrieval R@1/R@10.

    Writes <artifacts>/evaluate/{metrics.json, evaluation.json, report.html, figures/, audio/};
    the report compares with the registry's champion. Logged to MLflow.
    """
    from vmas.evaluation.evaluate import evaluate
    from vmas.tracking.registry import champion
    from vmas.tracking.runs import mlflow_logger

    cfg = resolve(config, profile, set_)
    logger = mlflow_logger(cfg, "evaluate", {"stage": "evaluate"}) if track else None
    result = evaluate(cfg, model_path=model, logger=logger, champion=champion(cfg), progress=progress)
    typer.echo(json.dumps({"metrics": result["metrics"], "clips": result["clips"], "embedding": result["embedding"],
                           "report": str(report_path(cfg))}, indent=2))


def ablation_command(
    seeds: Annotated[str, typer.Option(help="Training seeds, comma-separated (train.seed of each run).")] = "0,1,2",
    variants: Annotated[str, typer.Option(help="Variants, comma-separated: baseline, contrastive, full.")] =
    "baseline,contrastive,full",
    out: Annotated[Optional[Path], typer.Option(help="Folder (default: <artifacts>/ablation).", file_okay=False)] = None,
    progress: Progress = True,
    track: Annotated[bool, typer.Option(help="Log a parent MLflow run with a child run per variant and seed.")] = True,
    config: ConfigFile = None,
    profile: Profile = None,
    set_: Overrides = None,
) -> None:
    """The paper's ablation table: each variant trained with every seed on one split, evaluated on its held-out clips.

    Writes <out>/ablation.{json,html,png} (mean +- 95 % interval of MV-Align, FAD, KL, R@1, R@10, with
    chance levels, the real music and the codec's ceiling) and a folder per variant and seed. A rerun
    resumes: finished training and evaluation are not redone.
    """
    from vmas.evaluation.ablation import ablation

    cfg = resolve(config, profile, set_)
    try:
        seed_list = tuple(int(s) for s in seeds.split(",") if s.strip())
    except ValueError:
        raise typer.BadParameter(f"--seeds {seeds!r}: give integers separated by commas") from None
    summary = ablation(cfg, seeds=seed_list, variants=tuple(v.strip() for v in variants.split(",") if v.strip()),
                       out=out, track=track, progress=progress)
    typer.echo(json.dumps({k: summary[k] for k in ("variants", "reference", "chance", "targets", "clips")}, indent=2))


def register_command(config: ConfigFile = None, profile: Profile = None, set_: Overrides = None) -> None:
    """Register the evaluated model in MLflow (alias challenger) and promote it to champion if it wins.

    The version packages model.pt, its codec, its training config, the evaluation and its report.
    The decision and its reason are recorded on the version (register.primary_metrics decide).
    """
    from vmas.tracking.registry import register

    cfg = resolve(config, profile, set_)
    done = evaluation_path(cfg)
    if not done.is_file():
        raise StageError(f"register: {done} does not exist; run `vmas evaluate` first")
    typer.echo(json.dumps(register(cfg, json.loads(done.read_text()), done.parent), indent=2))


@registry_app.command("show")
def registry_show(config: ConfigFile = None, profile: Profile = None, set_: Overrides = None) -> None:
    """List the versions, newest first: aliases, primary metrics and each promotion decision."""
    from vmas.tracking.registry import versions

    cfg = resolve(config, profile, set_)
    found = versions(cfg)
    if not found:
        typer.echo(f"{cfg.register.name}: no registered versions yet (run `vmas evaluate` and `vmas register`)")
    for v in found:
        metrics = "  ".join(f"{k} {v['metrics'][k]:.4g}" for k in cfg.register.primary_metrics if k in v["metrics"])
        aliases = f" [{', '.join(sorted(v['aliases']))}]" if v["aliases"] else ""
        typer.echo(f"v{v['version']}{aliases}  {metrics}\n    {v['promotion'] or ''}")


@registry_app.command("promote")
def registry_promote(
    version: Annotated[int, typer.Argument(help="The version to make champion.")],
    reason: Annotated[str, typer.Option(help="Recorded on the version.")] = "promoted by hand",
    config: ConfigFile = None,
    profile: Profile = None,
    set_: Overrides = None,
) -> None:
    """Make a version the champion by hand (the policy is not consulted; the reason is recorded)."""
    from vmas.tracking.registry import promote

    typer.echo(json.dumps(promote(resolve(config, profile, set_), version, reason)))


@registry_app.command("rollback")
def registry_rollback(config: ConfigFile = None, profile: Profile = None, set_: Overrides = None) -> None:
    """Give the champion alias back to the version that held it before."""
    from vmas.tracking.registry import rollback

    typer.echo(json.dumps(rollback(resolve(config, profile, set_))))


@ab_app.command("build")
def ab_build(
    out: Annotated[Path, typer.Argument(help="Study folder to write (page/ for raters, key.json kept back).",
                                        file_okay=False)],
    a: Annotated[Optional[Path], typer.Option(help="An evaluation folder (its evaluation.json) for system A "
                                                   "(default: <artifacts>/evaluate).", file_okay=False)] = None,
    b: Annotated[Optional[Path], typer.Option(help="Another evaluation folder for system B "
                                                   "(default: the clips' real music).", file_okay=False)] = None,
    seed: Annotated[int, typer.Option(help="Seed of the side and order randomisation.")] = 0,
    config: ConfigFile = None,
    profile: Profile = None,
    set_: Overrides = None,
) -> None:
    """A blind pairwise page: each held-out clip's video with two musics, sides randomised."""
    import tempfile

    from vmas.evaluation.preference import build_study
    from vmas.media.video import export_span

    if a is None:
        a = evaluation_path(resolve(config, profile, set_)).parent

    first = _per_clip(a)
    second = _per_clip(b) if b is not None else {k: {**v, "audio": v["reference_audio"]} for k, v in first.items()}
    name_a, name_b = _system_name(a), _system_name(b) if b is not None else "real music"
    shared = sorted(set(first) & set(second))
    if not shared:
        raise typer.BadParameter(f"{a} and {b} have no clip in common")
    with tempfile.TemporaryDirectory() as tmp:
        pairs = [{"id": k, "systems": {name_a: first[k]["audio"], name_b: second[k]["audio"]},
                  "video": str(export_span(first[k]["source_path"], first[k]["start_s"], first[k]["end_s"],
                                           Path(tmp) / f"{i}.mp4"))} for i, k in enumerate(shared)]
        build_study(pairs, out, seed=seed)
    typer.echo(f"{out}: {len(pairs)} pairs; send {out / 'page'} to raters, keep {out / 'key.json'}; then "
               f"`vmas ab score {out / 'key.json'} ANSWERS.json...`")


@ab_app.command("score")
def ab_score(
    key: Annotated[Path, typer.Argument(help="The study's key.json.", dir_okay=False)],
    answers: Annotated[list[Path], typer.Argument(help="Raters' downloaded answers files.", dir_okay=False)],
    out: Annotated[Optional[Path], typer.Option(help="Write the scores as JSON here too.")] = None,
) -> None:
    """Preference rates per question and system (wins, ties, Wilson 95% intervals) from raters' answers."""
    from vmas.evaluation.preference import score_study, write_scores

    scores = score_study(key, answers)
    if out is not None:
        write_scores(scores, out)
    typer.echo(json.dumps(scores, indent=2))


def _per_clip(folder: Path) -> dict[str, dict]:
    path = folder / EVALUATION_FILE
    if not path.is_file():
        raise typer.BadParameter(f"{path} does not exist (run `vmas evaluate`)")
    return {r["id"]: r for r in json.loads(path.read_text())["per_clip"]}


def _system_name(folder: Path) -> str:
    result = json.loads((folder / EVALUATION_FILE).read_text())
    return f"model {result['model_sha256'][:8]}"


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_command)
    app.command("ablation")(ablation_command)
    app.command("register")(register_command)
    app.add_typer(registry_app, name="registry")
    app.add_typer(ab_app, name="ab")
