"""The evaluation report: one self-contained HTML page beside its PNG figures.

It shows the metric table against the current champion (with each metric's direction), what the
numbers were computed with (embedding, clips, sampling), the per-clip MV-Align, and for the first
clips the spectrograms of real vs generated music and their onsets against the video's motion peaks.
"""

from __future__ import annotations

import html
from pathlib import Path

from vmas.io import atomic_write_text

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


def write_report(path: str | Path, result: dict, champion: dict | None) -> Path:
    """Write ``report.html`` for an ``evaluation.json`` result; figures are linked relative to it."""
    path = Path(path)
    metrics = result["metrics"]
    verdict = compare(metrics, champion)
    champ_name = f"champion (v{champion['version']})" if champion else "champion"
    rows = "".join(
        f"<tr><td><b>{html.escape(k)}</b> <small>({METRICS.get(k, ('', ''))[0]})</small></td><td>{_fmt(v)}</td>"
        f"<td>{_fmt((champion or {}).get('metrics', {}).get(k))}</td><td class='{verdict[k]}'>{verdict[k]}</td>"
        f"<td>{html.escape(METRICS.get(k, ('', ''))[1])}</td></tr>" for k, v in metrics.items())
    chance = result.get("chance", {})
    clips = "".join(f"<tr><td>{html.escape(c['id'])}</td><td>{c['mv_align']:.3f}</td><td>{c['mv_align_reference']:.3f}</td>"
                    f"<td>{c['video_peaks']}</td><td>{c['onsets']}</td><td>{c['reference_onsets']}</td></tr>"
                    for c in result["per_clip"])
    figures = "".join(f"<figure><img src='{html.escape(f)}' alt='{html.escape(f)}'><figcaption>{html.escape(f)}"
                      "</figcaption></figure>" for f in result["figures"])
    s = result["sampling"]
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>vmas evaluation</title>
<style>body{{font:14px system-ui,sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}.better{{color:#080}}.worse{{color:#b00}}
figure{{display:inline-block;margin:0.5em}}img{{max-width:520px}}small{{color:#666}}</style></head><body>
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
<table><tr><th>clip</th><th>MV-Align</th><th>real music</th><th>video peaks</th><th>onsets</th><th>real onsets</th></tr>{clips}</table>
<h2>Figures</h2>{figures}
</body></html>
"""
    atomic_write_text(path, page)
    return path
