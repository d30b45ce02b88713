"""``vmas generate``: videos in, the same videos with music out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from vmas.cli.options import ConfigFile, Overrides, Profile, Progress, resolve
from vmas.errors import StageError


def expand_inputs(items: list[Path], extensions: list[str] | None = None) -> list[Path]:
    """Files as given; folders -> their videos (sorted; every video container FFmpeg knows, or only
    ``extensions`` when given: :func:`vmas.curation.batches.scan_media`), with what was skipped and
    why said on stderr; ``.txt`` lists and Parquet manifests (a ``path``, ``source_path`` or
    ``video_path`` column) -> the paths they name."""
    from vmas.curation.batches import scan_media

    found: list[Path] = []
    for item in items:
        if item.is_dir():
            scan = scan_media(item, extensions)
            summary = scan.summary()
            if not scan.videos:
                raise typer.BadParameter(f"{item}: no videos in this folder ({summary or 'it holds no files'})")
            if summary is not None:
                typer.echo(f"{item}: {summary}", err=True)
            found += scan.videos
        elif item.suffix.lower() == ".txt" and item.is_file():
            found += [(item.parent / line.strip()) if not Path(line.strip()).is_absolute() else Path(line.strip())
                      for line in item.read_text().splitlines() if line.strip() and not line.startswith("#")]
        elif item.suffix.lower() == ".parquet" and item.is_file():
            import pyarrow.parquet as pq

            table = pq.read_table(item)
            column = next((c for c in ("path", "source_path", "video_path") if c in table.column_names), None)
            if column is None:
                raise typer.BadParameter(f"{item}: a manifest needs a path, source_path or video_path column")
            found += [Path(p) for p in table.column(column).to_pylist()]
        else:
            found.append(item)
    return found


def generate_command(
    inputs: Annotated[list[Path], typer.Argument(help="Videos, folders of videos, or manifests (.txt, .parquet).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the results.", file_okay=False)] = Path("generated"),
    model: Annotated[Optional[str], typer.Option(help="model.pt, a package folder, or an MLflow URI "
                                                      "(default: models:/vmas@champion).")] = None,
    seed: Annotated[Optional[int], typer.Option(min=0, help="Random seed (default: generate.seed).")] = None,
    variants: Annotated[int, typer.Option(min=1, help="Musics per video (seeds seed, seed+1, ...).")] = 1,
    guidance: Annotated[Optional[float], typer.Option(min=0, help="Classifier-free guidance scale.")] = None,
    temperature: Annotated[Optional[float], typer.Option(min=0, help="Sampling temperature (0: greedy).")] = None,
    top_k: Annotated[Optional[int], typer.Option(min=0, help="Top-k sampling (0: off).")] = None,
    top_p: Annotated[Optional[float], typer.Option(min=0, max=1, help="Top-p sampling (0: off; replaces top-k).")] = None,
    duration: Annotated[Optional[float], typer.Option(min=0.1, help="Music length in s (default: the video's).")] = None,
    original_audio: Annotated[str, typer.Option(help="The video's own sound: drop, keep (mixed in) or duck "
                                                     "(mixed in, --duck-db under the music).")] = "drop",
    duck_db: Annotated[float, typer.Option(help="Level of the ducked original sound, in dB.")] = -12.0,
    loudness: Annotated[float, typer.Option(help="Target loudness of the music, LUFS.")] = -14.0,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda (default: generate.device).")] = None,
    force: Annotated[bool, typer.Option(help="Generate again even where an output is up to date.")] = False,
    progress: Progress = True,
    config: ConfigFile = None,
    profile: Profile = None,
    set_: Overrides = None,
) -> None:
    """Give each video music: OUT/<name>.mp4 (picture copied untouched, new sound), <name>.wav, <name>.json.

    The music is exactly as long as the video; long videos are generated in overlapping windows
    so the music stays one piece. Bad inputs are reported by name and skipped; the others go on.
    Outputs already made from the same input, model and settings are kept (--force redoes them).
    """
    from vmas.devices import select_device
    from vmas.generation.generate import GenerationSettings, generate
    from vmas.tracking.registry import load_model

    if original_audio not in ("drop", "keep", "duck"):
        raise typer.BadParameter(f"--original-audio must be drop, keep or duck, not {original_audio!r}")
    cfg = resolve(config, profile, set_)
    g = cfg.generate.model_copy(update={k: v for k, v in {"guidance": guidance, "temperature": temperature,
                                                          "top_k": top_k, "top_p": top_p, "seed": seed}.items()
                                         if v is not None})
    settings = GenerationSettings.from_config(g, variants=variants, duration_s=duration, loudness_lufs=loudness,
                                              original_audio=original_audio, duck_db=duck_db)
    videos = expand_inputs(inputs, cfg.ingest.extensions)
    package, name = load_model(cfg, model, select_device(device or g.device, "--device" if device else "generate.device"))
    failures: list[str] = []
    results = generate(package, videos, out, settings, model_name=name, progress=progress, force=force,
                       on_error=lambda path, exc: failures.append(str(exc) if str(path) in str(exc) else f"{path}: {exc}"))
    for r in results:
        typer.echo(f"{r['video']}  ({r['duration_s']:.1f} s, MV-Align {r['mv_align'] if r['mv_align'] is None else round(r['mv_align'], 3)})")
    if failures:
        raise StageError(f"{len(failures)} of {len(videos)} input(s) failed:\n" + "\n".join(f"  {f}" for f in failures))


def register(app: typer.Typer) -> None:
    app.command("generate")(generate_command)
