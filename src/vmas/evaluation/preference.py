"""A blind pairwise listening test (human preference), as in the VMAs paper's human study.

:func:`build_study` turns pairs ``(video, music from system A, music from system B)`` into a
self-contained web page for raters (media copied under opaque names, sides and order shuffled) and
a key kept by the experimenter; :func:`score_study` maps the raters' answer files back through the
key into per-system preference rates with Wilson intervals. The study id, a hash of the key, is
embedded in the page and in every answers file, so answers are never scored against the wrong key.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from vmas.io import atomic_write_json, atomic_write_text

QUESTIONS = {
    "quality": "Which music has the better overall quality?",
    "alignment": "Which music fits the video better (content and rhythm)?",
}
CHOICES = {"1": "Music 1", "2": "Music 2", "tie": "Cannot tell"}


def build_study(
    pairs: Sequence[Mapping[str, Any]], out_dir: str | Path, seed: int = 0, title: str = "Which music fits the video?"
) -> Path:
    """Write ``out_dir/page/`` (sent to raters), ``out_dir/key.json`` and ``out_dir/README.txt``; return ``out_dir``.

    Each pair is ``{"video": path, "systems": {name_a: wav, name_b: wav}, "id": clip id (optional)}``.
    Every input is checked before anything is written. The page is built in a temporary folder and
    renamed into place, so a crash never leaves a half-copied page; rebuilding with the same pairs
    and seed gives the same key and study id.
    """
    checked = [_check_pair(i, p) for i, p in enumerate(pairs)]
    if not checked:
        raise ValueError("a study needs at least one pair")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(checked))
    flips = rng.integers(0, 2, len(checked))
    entries, media = {}, []
    for pos, (src, flip) in enumerate(zip(order, flips)):
        clip, video, (first, second) = checked[src]
        side1, side2 = (second, first) if flip else (first, second)
        pid = f"p{pos + 1:03d}"
        names = {"video": f"{pid}_video{video.suffix.lower()}"}
        for side, (system, wav) in (("1", side1), ("2", side2)):
            names[side] = f"{pid}_{side}{wav.suffix.lower()}"
            media.append((wav, names[side]))
        media.append((video, names["video"]))
        sources = {"video": str(video), "1": str(side1[1]), "2": str(side2[1])}
        entries[pid] = {"clip": clip, "sides": {"1": side1[0], "2": side2[0]}, "media": names, "sources": sources}
    body = {"seed": int(seed), "title": title, "questions": QUESTIONS, "choices": CHOICES, "pairs": entries}
    key = {"study": _study_id(body), **body}

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".page.", dir=out_dir))
    try:
        (tmp / "media").mkdir()
        for src, name in media:
            shutil.copyfile(src, tmp / "media" / name)
        (tmp / "index.html").write_text(_render_page(key))
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700; the page is meant to be shared
        atomic_write_json(out_dir / "key.json", key)
        atomic_write_text(out_dir / "README.txt", _readme(key))
        _swap_dir(tmp, out_dir / "page")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _check_pair(index: int, pair: Mapping[str, Any]) -> tuple[str, Path, list[tuple[str, Path]]]:
    """Validate one input pair; return ``(clip id, video, [(system, wav), (system, wav)])``."""
    if not isinstance(pair, Mapping) or "video" not in pair or not isinstance(pair.get("systems"), Mapping):
        raise ValueError(f"pair {index}: expected {{'video': ..., 'systems': {{name: wav, name: wav}}}}, got {pair!r}")
    video = Path(pair["video"])
    clip = str(pair.get("id") or video.stem)
    where = f"pair {index} (clip {clip!r})"
    systems = [(str(name), Path(wav)) for name, wav in pair["systems"].items()]
    if len(systems) != 2:
        raise ValueError(f"{where}: needs exactly two systems, got {len(systems)}: {[s for s, _ in systems]}")
    for path in (video, *(wav for _, wav in systems)):
        if not path.is_file():
            raise FileNotFoundError(f"{where}: no such file: {path}")
    (_, wav1), (_, wav2) = systems
    if wav1.suffix.lower() != wav2.suffix.lower():  # the copies' names would tell the systems apart
        raise ValueError(f"{where}: the two music files differ in format ({wav1.name}, {wav2.name})")
    return clip, video, systems


def _study_id(body: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def _swap_dir(new: Path, target: Path) -> None:
    """Rename ``new`` to ``target``, moving an old ``target`` aside first and deleting it after."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
        os.replace(target, old)  # renaming a directory over an empty one is allowed
    os.replace(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def score_study(key_path: str | Path, answer_paths: Iterable[str | Path]) -> dict:
    """Preference rates per question and system from any number of raters' answers files.

    For each system: wins, losses, ties; ``rate = wins / (wins + losses + ties)`` and
    ``rate_without_ties = wins / (wins + losses)``, each with a 95% Wilson interval, ``None`` when
    there is nothing to divide by. ``matchups`` gives the same per pair of systems (a study may
    compare one model with several baselines). Raises ``ValueError`` naming the file for a
    malformed file, an answers file of another study, an unknown pair or question, a bad value,
    or a rater name seen twice (the same answers counted twice).
    """
    key_path = Path(key_path)
    key = _read_json(key_path)
    if not isinstance(key, dict) or not isinstance(key.get("pairs"), dict) or "study" not in key:
        raise ValueError(f"{key_path}: not a study key (no 'study' and 'pairs')")
    if _study_id({k: v for k, v in key.items() if k != "study"}) != key["study"]:
        raise ValueError(f"{key_path}: the key was edited after it was built (it no longer hashes to its study id)")
    pairs = key["pairs"]
    if isinstance(answer_paths, (str, Path)):
        answer_paths = [answer_paths]

    counts: dict[str, Counter] = {q: Counter() for q in QUESTIONS}  # (question) -> {(pid, choice): n}
    raters: dict[str, Path] = {}
    for path in map(Path, answer_paths):
        data = _read_json(path)
        if not isinstance(data, dict) or not isinstance(data.get("answers"), dict):
            raise ValueError(f"{path}: not an answers file (no 'answers' object)")
        if data.get("study") != key["study"]:
            raise ValueError(f"{path}: answers to study {data.get('study')!r}, but {key_path} is {key['study']!r}")
        rater = str(data.get("rater") or "").strip()
        if rater and rater in raters:
            raise ValueError(f"{path}: rater {rater!r} already answered in {raters[rater]}")
        raters[rater or f"<anonymous {len(raters)}>"] = path
        for pid, answer in data["answers"].items():
            if pid not in pairs:
                raise ValueError(f"{path}: unknown pair id {pid!r} (not in {key_path})")
            if not isinstance(answer, dict):
                raise ValueError(f"{path}: pair {pid!r}: expected an object of answers, got {answer!r}")
            for question, choice in answer.items():
                if question not in QUESTIONS:
                    raise ValueError(f"{path}: pair {pid!r}: unknown question {question!r}")
                if choice not in CHOICES:
                    raise ValueError(f"{path}: pair {pid!r}, {question}: answer {choice!r} not in {list(CHOICES)}")
                counts[question][pid, choice] += 1

    systems = sorted({s for p in pairs.values() for s in p["sides"].values()})
    questions = {}
    for question, text in QUESTIONS.items():
        per_system = {s: Counter() for s in systems}
        matchups: dict[tuple[str, str], dict[str, Counter]] = {}
        answered = set()
        for (pid, choice), n in counts[question].items():
            answered.add(pid)
            sides = pairs[pid]["sides"]
            a, b = sorted(sides.values())
            matchup = matchups.setdefault((a, b), {a: Counter(), b: Counter()})
            for side, system in sides.items():
                outcome = "ties" if choice == "tie" else "wins" if choice == side else "losses"
                per_system[system][outcome] += n
                matchup[system][outcome] += n
        questions[question] = {
            "question": text,
            "judgements": sum(counts[question].values()),
            "unanswered_pairs": sorted(set(pairs) - answered),
            "systems": {s: _rates(c) for s, c in per_system.items()},
            "matchups": {f"{a} vs {b}": {s: _rates(c) for s, c in m.items()} for (a, b), m in sorted(matchups.items())},
        }
    answered_any = {pid for c in counts.values() for pid, _ in c}
    return {"study": key["study"], "key": str(key_path), "raters": len(raters), "pairs": len(pairs),
            "unanswered_pairs": sorted(set(pairs) - answered_any), "questions": questions}


def _rates(c: Counter) -> dict:
    wins, losses, ties = c["wins"], c["losses"], c["ties"]
    n, decided = wins + losses + ties, wins + losses
    return {"wins": wins, "losses": losses, "ties": ties,
            "rate": wins / n if n else None, "rate_ci95": list(wilson_interval(wins, n)) if n else None,
            "rate_without_ties": wins / decided if decided else None,
            "rate_without_ties_ci95": list(wilson_interval(wins, decided)) if decided else None}


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (sound at small ``n`` and at 0 or ``n`` successes)."""
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n > 0, got {successes} of {n}")
    p, z2 = successes / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def write_scores(scores: Mapping[str, Any], path: str | Path) -> None:
    atomic_write_json(path, scores)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e


def _readme(key: Mapping[str, Any]) -> str:
    return f"""Blind pairwise listening test, study {key['study']} ({len(key['pairs'])} pairs, seed {key['seed']}).

Send the raters the folder page/ only (zip it). Never send key.json: it says which system is which.
Raters open page/index.html in a desktop browser (Chrome or Firefox), with headphones, play each
video with music 1 and music 2, answer both questions, enter their name and press "Download
answers" (answers are kept in the browser meanwhile), then send back the answers_*.json file.
Score them all with `vmas ab score` (vmas.evaluation.preference.score_study): per question and
system, the preference rate with and without ties, with 95% Wilson intervals.
"""


def _render_page(key: Mapping[str, Any]) -> str:
    """The rater's page: one block per pair, the study id and pair ids only (no system names)."""
    blocks = []
    for n, (pid, entry) in enumerate(key["pairs"].items(), 1):
        media = entry["media"]
        radios = "".join(
            f"<fieldset><legend>{html.escape(text)}</legend>"
            + "".join(
                f'<label><input type="radio" name="{pid}_{q}" value="{v}" data-pair="{pid}" data-q="{q}"> {label}'
                "</label>"
                for v, label in CHOICES.items()
            )
            + "</fieldset>"
            for q, text in QUESTIONS.items()
        )
        blocks.append(
            f'<section class="pair" id="{pid}"><h2>Video {n} of {len(key["pairs"])}</h2>'
            f'<video src="media/{media["video"]}" muted controls playsinline preload="metadata"></video>'
            f'<audio data-side="1" src="media/{media["1"]}" preload="auto"></audio>'
            f'<audio data-side="2" src="media/{media["2"]}" preload="auto"></audio>'
            '<p><button data-side="1">Play with music 1</button> <button data-side="2">Play with music 2</button></p>'
            f"{radios}</section>"
        )
    page = _PAGE.replace("__TITLE__", html.escape(key["title"])).replace("__STUDY__", key["study"])
    return page.replace("__PAIRS__", json.dumps(list(key["pairs"]))).replace("__BLOCKS__", "\n".join(blocks))


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>body{font-family:sans-serif;max-width:820px;margin:2em auto;padding:0 1em}.pair{border-top:1px solid #ccc}
video{width:100%;max-height:60vh;background:#000}button{font-size:1em;padding:.4em 1em}
button.on{background:#2a6;color:#fff}fieldset{border:none}legend{font-weight:bold}label{margin-right:1.5em}
#bar{position:sticky;bottom:0;background:#f4f4f4;padding:.8em;border-top:1px solid #ccc}</style></head><body>
<h1>__TITLE__</h1>
<p>Please use headphones. For each video, press "Play with music 1" and "Play with music 2" (as often as
you like); the video restarts with that music. Then answer both questions. Your answers are kept in this
browser as you go. When you are done, enter your name and press "Download answers", and send the file back.</p>
<p><label>Your name: <input id="rater" type="text"></label></p>
__BLOCKS__
<div id="bar"><span id="progress"></span> <button id="download">Download answers</button></div>
<script>
const STUDY = "__STUDY__", PAIRS = __PAIRS__, STORE = "vmas-ab-" + STUDY;
let state;
try { state = JSON.parse(localStorage.getItem(STORE)); } catch (e) { state = null; }
state = state || {rater: "", answers: {}};
const complete = () => PAIRS.filter(p => (state.answers[p] || {}).quality && state.answers[p].alignment).length;
function save() {
  try { localStorage.setItem(STORE, JSON.stringify(state)); } catch (e) {}
  document.getElementById("progress").textContent = complete() + " of " + PAIRS.length + " videos answered";
}
document.querySelectorAll(".pair").forEach(block => {
  const video = block.querySelector("video"), audios = block.querySelectorAll("audio");
  let active = null;
  const follow = () => {  // keep the chosen music within 150 ms of the picture (seeks, stalls)
    if (active && Math.abs(active.currentTime - video.currentTime) > 0.15) active.currentTime = video.currentTime;
  };
  block.querySelectorAll("button[data-side]").forEach(btn => btn.addEventListener("click", () => {
    document.querySelectorAll("video, audio").forEach(m => m.pause());
    active = block.querySelector('audio[data-side="' + btn.dataset.side + '"]');
    block.querySelectorAll("button[data-side]").forEach(b => b.classList.toggle("on", b === btn));
    video.currentTime = 0; active.currentTime = 0;
    video.play(); active.play();
  }));
  // a pause queued by another button's click finds the video playing again: leave the new audio alone
  const stop = () => { if (video.paused) audios.forEach(a => a.pause()); };
  ["pause", "ended"].forEach(t => video.addEventListener(t, stop));
  video.addEventListener("play", () => { if (active) { follow(); active.play(); } });
  ["seeked", "timeupdate"].forEach(t => video.addEventListener(t, follow));
  video.addEventListener("volumechange", () => { video.muted = true; });
});
document.querySelectorAll("input[type=radio]").forEach(r => {
  const a = state.answers[r.dataset.pair];
  r.checked = !!a && a[r.dataset.q] === r.value;
  r.addEventListener("change", () => {
    (state.answers[r.dataset.pair] = state.answers[r.dataset.pair] || {})[r.dataset.q] = r.value;
    save();
  });
});
const rater = document.getElementById("rater");
rater.value = state.rater;
rater.addEventListener("input", () => { state.rater = rater.value.trim(); save(); });
document.getElementById("download").addEventListener("click", () => {
  if (!state.rater) { alert("Please enter your name first."); rater.focus(); return; }
  const missing = PAIRS.length - complete();
  if (missing && !confirm(missing + " videos are not fully answered. Download anyway?")) return;
  const answers = {};
  PAIRS.forEach(p => { if (state.answers[p]) answers[p] = state.answers[p]; });
  const text = JSON.stringify({study: STUDY, rater: state.rater, answers: answers}, null, 2);
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([text], {type: "application/json"}));
  link.download = "answers_" + state.rater.replace(/[^A-Za-z0-9_-]+/g, "_") + ".json";
  document.body.appendChild(link); link.click(); link.remove();
});
save();
</script></body></html>
"""
