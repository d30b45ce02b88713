"""The blind listening test: the page gives nothing away, the key maps answers back, scoring refuses bad input."""

import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from vmas.evaluation.preference import build_study, score_study, wilson_interval, write_scores

SYSTEMS = ("vmas_ours", "musicgen_baseline")


def _pairs(root: Path, n: int = 12) -> list[dict]:
    """``n`` pairs of a fake video and two short WAVs whose file names spell out the system."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    pairs = []
    for i in range(n):
        video = root / f"clip{i}_{SYSTEMS[0]}.mp4"  # a name that would leak if it were copied as is
        video.write_bytes(bytes(rng.integers(0, 256, 64, dtype=np.uint8)))
        systems = {}
        for name in SYSTEMS:
            systems[name] = root / name / f"clip{i}.wav"
            systems[name].parent.mkdir(exist_ok=True)
            sf.write(systems[name], rng.uniform(-0.1, 0.1, 800), 8000)
        pairs.append({"video": video, "systems": systems, "id": f"clip{i}"})
    return pairs


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.text = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture
def study(tmp_path):
    pairs = _pairs(tmp_path / "in")
    return build_study(pairs, tmp_path / "study", seed=3), pairs


def _answers(path: Path, study_id: str, answers: dict, rater: str = "ann") -> Path:
    path.write_text(json.dumps({"study": study_id, "rater": rater, "answers": answers}))
    return path


def test_page_copies_media_under_opaque_names_and_names_no_system(study):
    out, pairs = study
    page = out / "page"
    assert sorted(p.name for p in out.iterdir()) == ["README.txt", "key.json", "page"]
    media = sorted(p.name for p in (page / "media").iterdir())
    assert len(media) == 3 * len(pairs)
    assert {"p001_video.mp4", "p001_1.wav", "p001_2.wav", "p012_2.wav"} <= set(media)
    key = json.loads((out / "key.json").read_text())
    entry = key["pairs"]["p001"]
    copied = next(p for p in pairs if p["id"] == entry["clip"])
    assert (page / "media" / "p001_1.wav").read_bytes() == copied["systems"][entry["sides"]["1"]].read_bytes()
    assert (page / "media" / "p001_video.mp4").read_bytes() == copied["video"].read_bytes()
    for path in page.rglob("*"):
        for name in (*SYSTEMS, "clip"):
            assert name not in path.name
    html = (page / "index.html").read_text()
    for name in (*SYSTEMS, "clip0", "clip1"):
        assert name not in html
    assert "http://" not in html and "https://" not in html  # self-contained


def test_page_parses_with_two_questions_and_one_block_per_pair(study):
    out, pairs = study
    parser = _Tags()
    parser.feed((out / "page" / "index.html").read_text())
    tags = parser.tags
    blocks = [a["id"] for t, a in tags if t == "section" and a.get("class") == "pair"]
    assert blocks == [f"p{i:03d}" for i in range(1, len(pairs) + 1)]
    assert sum(t == "video" and "muted" in a for t, a in tags) == len(pairs)
    assert sum(t == "audio" for t, _ in tags) == 2 * len(pairs)
    text = " ".join(parser.text)
    assert text.count("Which music has the better overall quality?") == len(pairs)
    assert text.count("Which music fits the video better (content and rhythm)?") == len(pairs)
    assert "Play with music 1" in text and "Play with music 2" in text and "Cannot tell" in text
    radios = [a for t, a in tags if t == "input" and a.get("type") == "radio"]
    assert len(radios) == 2 * 3 * len(pairs) and {a["value"] for a in radios} == {"1", "2", "tie"}
    assert any(t == "input" and a.get("id") == "rater" for t, a in tags)
    key = json.loads((out / "key.json").read_text())
    assert key["study"] in text  # the study id travels in the page and back in the answers


def test_sides_and_order_are_random_but_fixed_by_the_seed(tmp_path):
    pairs = _pairs(tmp_path / "in")

    def layout(seed, name):
        key = json.loads((build_study(pairs, tmp_path / name, seed=seed) / "key.json").read_text())
        return [(p["clip"], p["sides"]["1"]) for p in key["pairs"].values()], key["study"]

    first, study_a = layout(0, "a")
    again, study_b = layout(0, "b")
    assert first == again and study_a == study_b
    assert {side for _, side in first} == set(SYSTEMS)  # both systems appear on side 1
    assert [clip for clip, _ in first] != [f"clip{i}" for i in range(len(pairs))]  # order shuffled
    other, study_c = layout(1, "c")
    assert other != first and study_c != study_a
    build_study(pairs, tmp_path / "a", seed=1)  # rebuilding replaces the page in place
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["README.txt", "key.json", "page"]


def test_scores_map_sides_back_to_systems(study, tmp_path):
    out, pairs = study
    key = json.loads((out / "key.json").read_text())
    files = []
    for r, rater in enumerate(("ann", "bob", "cy")):
        answers = {}
        for pid, entry in key["pairs"].items():
            side_a = "1" if entry["sides"]["1"] == SYSTEMS[0] else "2"
            answers[pid] = {"quality": side_a, "alignment": "tie"}
        if r == 2:
            del answers["p005"]  # unanswered pairs may be missing
        files.append(_answers(tmp_path / f"{rater}.json", key["study"], answers, rater))
    scores = score_study(out / "key.json", files)
    n = 3 * len(pairs) - 1
    assert scores["raters"] == 3 and scores["unanswered_pairs"] == []
    quality, alignment = scores["questions"]["quality"], scores["questions"]["alignment"]
    assert quality["judgements"] == alignment["judgements"] == n
    a, b = quality["systems"][SYSTEMS[0]], quality["systems"][SYSTEMS[1]]
    assert (a["wins"], a["losses"], a["ties"], a["rate"], a["rate_without_ties"]) == (n, 0, 0, 1.0, 1.0)
    assert (b["wins"], b["losses"], b["rate"]) == (0, n, 0.0)
    assert a["rate_ci95"][1] == 1.0 and a["rate_ci95"][0] > 0.9
    for s in SYSTEMS:
        tie = alignment["systems"][s]
        assert (tie["wins"], tie["losses"], tie["ties"], tie["rate"]) == (0, 0, n, 0.0)
        assert tie["rate_without_ties"] is None and tie["rate_without_ties_ci95"] is None
    assert list(quality["matchups"]) == [f"{SYSTEMS[1]} vs {SYSTEMS[0]}"]
    write_scores(scores, tmp_path / "scores.json")
    assert json.loads((tmp_path / "scores.json").read_text()) == scores


def test_no_answers_gives_no_rates(study):
    out, pairs = study
    scores = score_study(out / "key.json", [])
    assert scores["raters"] == 0 and len(scores["unanswered_pairs"]) == len(pairs)
    for question in scores["questions"].values():
        assert question["judgements"] == 0
        for s in SYSTEMS:
            assert question["systems"][s]["rate"] is None and question["systems"][s]["rate_ci95"] is None


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        ({"study": "0123456789abcdef", "rater": "x", "answers": {}}, "study '0123456789abcdef'"),
        ({"rater": "x", "answers": {"p999": {"quality": "1"}}}, "unknown pair id 'p999'"),
        ({"rater": "x", "answers": {"p001": {"quality": "A"}}}, "answer 'A'"),
        ({"rater": "x", "answers": {"p001": {"fun": "1"}}}, "unknown question 'fun'"),
    ],
)
def test_bad_answers_files_are_refused_by_name(study, tmp_path, content, message):
    out, _ = study
    key = json.loads((out / "key.json").read_text())
    bad = tmp_path / "bad_answers.json"
    bad.write_text(content if isinstance(content, str) else json.dumps({"study": key["study"], **content}))
    with pytest.raises(ValueError, match=message) as error:
        score_study(out / "key.json", [bad])
    assert "bad_answers.json" in str(error.value)


def test_a_rater_counted_twice_or_an_edited_key_is_refused(study, tmp_path):
    out, _ = study
    key = json.loads((out / "key.json").read_text())
    twice = _answers(tmp_path / "ann.json", key["study"], {"p001": {"quality": "1"}})
    with pytest.raises(ValueError, match="already answered"):
        score_study(out / "key.json", [twice, twice])
    key["pairs"]["p001"]["sides"] = {"1": key["pairs"]["p001"]["sides"]["2"], "2": key["pairs"]["p001"]["sides"]["1"]}
    (out / "key.json").write_text(json.dumps(key))
    with pytest.raises(ValueError, match="key.json: the key was edited"):
        score_study(out / "key.json", [twice])


def test_bad_inputs_raise_before_anything_is_written(tmp_path):
    pairs = _pairs(tmp_path / "in", n=3)
    pairs[2]["systems"][SYSTEMS[1]].unlink()
    with pytest.raises(FileNotFoundError, match=f"{SYSTEMS[1]}/clip2.wav"):
        build_study(pairs, tmp_path / "study")
    assert not (tmp_path / "study").exists()
    three = _pairs(tmp_path / "in", n=1)
    three[0]["systems"]["third"] = three[0]["systems"][SYSTEMS[0]]
    with pytest.raises(ValueError, match="pair 0 \\(clip 'clip0'\\): needs exactly two systems"):
        build_study(three, tmp_path / "study")
    assert not (tmp_path / "study").exists()


def test_wilson_interval_known_values():
    assert wilson_interval(8, 10) == pytest.approx((0.490, 0.943), abs=1e-3)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.278), abs=1e-3)
    assert wilson_interval(50, 100) == pytest.approx((0.404, 0.596), abs=1e-3)
    with pytest.raises(ValueError):
        wilson_interval(0, 0)
