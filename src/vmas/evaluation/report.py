"""The evaluation report: one self-contained HTML page beside its PNG figures.

It shows the metric table against the current champion (with each metric's direction), what the
numbers were computed with (embedding, clips, sampling), the per-clip MV-Align with a player for the
generated and the real music of each clip, and for the first clips the spectrograms of real vs
generated music and their onsets against the video's motion peaks.

A clip is named by its source and span, ``street.mp4 00:12–00:22``: the source's title or file name
from the ingest manifest (a downloaded video's file is named by its id), else its file's name. Audio
and figures are linked relative to the page, so it works opened from its folder (or the folder copied
whole, with the clips' folder beside it for the real music).
"""

from __future__ import annotations

import html
import logging
import os
from pathlib import Path
from typing import Iterable
from urllib.parse import quote, urlparse

from vmas.errors import StageError
from vmas.io import atomic_write_text
from vmas.manifest import ID, Manifest

log = logging.getLogger(__name__)

# metric -> (direction, what it means); the registry's promotion policy names a subset of these
METRICS = {
    "mv_align": ("max", "beat alignment of the generated music with the video's motion peaks (AV-Align, one-to-one)"),
    "mv_align_reference": ("max", "the same for the clip's real music: the level a perfect model would reach"),
    "fad": ("min", "Frechet distance between embeddings of generated and real music"),
    "kl": ("min", "KL(real || generated) between tag distributions"),
    "retrieval_r1": ("max", "video -> music retrieval, recall at 1, with the model's embeddings"),
    "retrieval_r10": ("max", "video -> music retrieval, recall at 10"),
}


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.4g}" if isinstance(value, float) else html.escape(str(value))


def compare(metrics: dict, champion: dict | None) -> dict[str, str]:
    """Per metric: ``better`` / ``worse`` / ``equal`` than the champion, or ``''`` when not comparable."""
    out = {}
    for name, value in metrics.items():
        other = (champion or {}).get("metrics", {}).get(name)
        direction = METRICS.get(name, ("max", ""))[0]
        if value is None or other is None:
            out[name] = ""
        elif value == other:
            out[name] = "equal"
        else:
            out[name] = "better" if (value > other) == (direction == "max") else "worse"
    return out


def clock(seconds: float) -> str:
    """A time as ``mm:ss`` (``h:mm:ss`` from an hour on), tenths only when not whole: 72.5 -> ``01:12.5``."""
    whole, tenth = divmod(int(round(float(seconds) * 10)), 10)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"
    return f"{text}.{tenth}" if tenth else text


def source_names(ingest: str | Path, video_ids: Iterable[str]) -> dict[str, str]:
    """Video id -> a name a person knows the video by, from the ingest manifest at ``ingest``: its title
    (metadata sources), else the file's name as ingested, else the last part of its URL. Streams the
    manifest's four columns and keeps only ``video_ids``; an unreadable manifest gives ``{}`` (the
    report then names clips by their files), with a warning naming it."""
    wanted, names = set(video_ids), {}
    try:
        for row in Manifest(Path(ingest)).iter_rows([ID, "path", "url", "video_title"]):
            if row[ID] in wanted:
                url_name = Path(urlparse(row["url"]).path).name if row["url"] else None
                names[row[ID]] = row["video_title"] or (Path(row["path"]).name if row["path"] else None) or \
                    url_name or row["url"]
    except (StageError, OSError, KeyError, ValueError, TypeError) as exc:  # Arrow's errors are these too
        log.warning("report: cannot read source names from the ingest manifest %s: %s", ingest, exc)
        return {}
    return {k: v for k, v in names.items() if v}


def clip_label(clip: dict, sources: dict[str, str] | None = None) -> str:
    """``<source> <start>–<end>`` for a ``per_clip`` row: the source named by ``sources`` (video id -> name),
    else its ``source_path``'s file name; just the clip id when the row has no span."""
    name = (sources or {}).get(clip.get("video_id")) or (Path(clip["source_path"]).name if clip.get("source_path")
                                                          else clip["id"])
    if clip.get("start_s") is None or clip.get("end_s") is None:
        return name
    return f"{name} {clock(clip['start_s'])}–{clock(clip['end_s'])}"


def _ingest_beside(report: Path) -> Path:
    """The ingest manifest of the artifacts folder holding ``<artifacts>/evaluate/report.html``
    (:func:`vmas.layout.manifest_dir`); a report written elsewhere finds none there."""
    return report.parent.parent / "manifests" / "ingest"


def _link(target: str | None, folder: Path, fallback: Path | None = None) -> str | None:
    """``target`` as a URL relative to ``folder`` (for the page in it), or ``fallback``'s when ``target`` is
    not found (a relative path written from another working directory); None when neither is a file."""
    for candidate in (Path(target) if target else None, fallback):
        if candidate is not None and candidate.is_file():
            return quote(Path(os.path.relpath(candidate.resolve(), folder.resolve())).as_posix())
    return None


def _player(src: str | None, label: str) -> str:
    """An ``<audio controls>`` element for ``src`` (a URL relative to the page), or a note that the file is missing."""
    if src is None:
        return "<small>missing</small>"
    return f"<audio controls preload='none' src='{html.escape(src)}' title='{html.escape(label)}'></audio>"


def write_report(path: str | Path, result: dict, champion: dict | None,
                 sources: dict[str, str] | None = None) -> Path:
    """Write ``report.html`` for an ``evaluation.json`` result; figures and audio are linked relative to it.

    ``sources`` (video id -> name, see :func:`source_names`) names the clips; None reads them from the
    ingest manifest of the artifacts folder the report is in, when there is one.
    """
    path = Path(path)
    if sources is None:
        ingest = _ingest_beside(path)
        sources = source_names(ingest, {c.get("video_id") for c in result["per_clip"]}) if ingest.is_dir() else {}
    labels = {c["id"]: clip_label(c, sources) for c in result["per_clip"]}
    metrics = result["metrics"]
    verdict = compare(metrics, champion)
    champ_name = f"champion (v{champion['version']})" if champion else "champion"
    rows = "".join(
        f"<tr><td><b>{html.escape(k)}</b> <small>({METRICS.get(k, ('', ''))[0]})</small></td><td>{_fmt(v)}</td>"
        f"<td>{_fmt((champion or {}).get('metrics', {}).get(k))}</td><td class='{verdict[k]}'>{verdict[k]}</td>"
        f"<td>{html.escape(METRICS.get(k, ('', ''))[1])}</td></tr>" for k, v in metrics.items())
    chance = result.get("chance", {})
    clips = "".join(_clip_row(c, labels[c["id"]], path) for c in result["per_clip"])
    figures = "".join(f"<figure><img src='{html.escape(f)}' alt='{html.escape(f)}'><figcaption>"
                      f"{html.escape(_figure_caption(f, labels))}</figcaption></figure>" for f in result["figures"])
    s = result["sampling"]
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>vmas evaluation</title>
<style>body{{font:14px system-ui,sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}.better{{color:#080}}.worse{{color:#b00}}
figure{{display:inline-block;margin:0.5em}}img{{max-width:520px}}small{{color:#666}}audio{{width:210px}}</style></head><body>
<h1>vmas evaluation</h1>
<p>Model <code>{html.escape(result['model'])}</code> (sha256 <code>{result['model_sha256'][:12]}</code>), on
{result['clips']} held-out clips from {result['videos']} videos the model never trained on.</p>
<h2>Metrics</h2>
<table><tr><th>metric</th><th>this model</th><th>{html.escape(champ_name)}</th><th></th><th>meaning</th></tr>{rows}</table>
<p>Chance level of retrieval: R@1 {_fmt(chance.get('retrieval_r1'))}, R@10 {_fmt(chance.get('retrieval_r10'))}.
FAD and KL use <b>{html.escape(str(result['embedding']))}</b> ({result['embedding_dim']}-d, {result['embedding_windows'][0]}
generated and {result['embedding_windows'][1]} real windows); few windows make FAD noisy.
Sampling: guidance {s['guidance']}, temperature {s['temperature']}, top-k {s['top_k']}, top-p {s['top_p']}, seed {s['seed']}.
Video peaks: local maxima of the Farneback flow rising at least {result['motion_threshold']} of the way from the clip's median motion to its largest.</p>
<h2>Per clip</h2>
<table><tr><th>clip</th><th>MV-Align</th><th>real music</th><th>video peaks</th><th>onsets</th><th>real onsets</th>
<th>listen: generated</th><th>listen: real</th></tr>{clips}</table>
<h2>Figures</h2>{figures}
</body></html>
"""
    atomic_write_text(path, page)
    return path


def _clip_row(clip: dict, label: str, report: Path) -> str:
    """A clip's row of the per-clip table: its name and id, its numbers, a player for its generated and its real music."""
    generated = _link(clip.get("audio"), report.parent, _generated_beside(report, clip))
    real = _link(clip.get("reference_audio"), report.parent)
    return (f"<tr><td>{html.escape(label)}<br><small>{html.escape(clip['id'])}</small></td>"
            f"<td>{clip['mv_align']:.3f}</td><td>{clip['mv_align_reference']:.3f}</td><td>{clip['video_peaks']}</td>"
            f"<td>{clip['onsets']}</td><td>{clip['reference_onsets']}</td>"
            f"<td>{_player(generated, 'generated: ' + label)}</td><td>{_player(real, 'real: ' + label)}</td></tr>")


def _generated_beside(report: Path, clip: dict) -> Path | None:
    """Where ``vmas evaluate`` writes a clip's music beside its report: ``audio/<file name>``."""
    return report.parent / "audio" / Path(clip["audio"]).name if clip.get("audio") else None


def _figure_caption(figure: str, labels: dict[str, str]) -> str:
    """``<clip label>: <kind>`` for ``figures/<clip id, / as ->_<kind>.png``; the file name when no clip matches."""
    stem = Path(figure).stem
    for clip_id, label in labels.items():
        flat = clip_id.replace("/", "-")
        if stem.startswith(flat + "_"):
            return f"{label}: {stem[len(flat) + 1:]}"
    return figure
