"""The evaluation report: the comparison with the champion, and a page that links its figures."""

from html.parser import HTMLParser

from vmas.evaluation.report import compare, write_report


def test_compare_respects_each_metric_direction():
    ours = {"mv_align": 0.3, "fad": 4.0, "kl": 1.0, "retrieval_r1": 0.2}
    champion = {"version": 2, "metrics": {"mv_align": 0.2, "fad": 3.0, "kl": 1.0}}
    assert compare(ours, champion) == {"mv_align": "better", "fad": "worse", "kl": "equal", "retrieval_r1": ""}
    assert set(compare(ours, None).values()) == {""}


def test_report_page(tmp_path):
    result = {"model": "m.pt", "model_sha256": "ab" * 32, "clips": 2, "videos": 1, "embedding": "musicnn-MTT",
              "embedding_dim": 200, "embedding_windows": [2, 2], "motion_threshold": 0.1,
              "sampling": {"guidance": 3.0, "temperature": 1.0, "top_k": 250, "top_p": 0.0, "seed": 0},
              "chance": {"retrieval_r1": 0.5, "retrieval_r10": 1.0},
              "metrics": {"mv_align": 0.25, "fad": 3.0, "kl": None},
              "per_clip": [{"id": "v/0000", "mv_align": 0.2, "mv_align_reference": 0.4, "video_peaks": 5,
                            "onsets": 9, "reference_onsets": 6}],
              "figures": ["figures/v-0000_alignment.png"]}
    path = write_report(tmp_path / "report.html", result, {"version": 1, "metrics": {"mv_align": 0.3, "fad": 2.0}})
    page = path.read_text()
    images = []

    class Images(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag == "img":
                images.append(dict(attrs)["src"])

    Images().feed(page)
    assert images == ["figures/v-0000_alignment.png"]
    assert "champion (v1)" in page and "musicnn-MTT" in page and "class='worse'" in page and "v/0000" in page
