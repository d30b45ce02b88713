import numpy as np

from vmas.curation.filter_static import (embed_histogram, embed_pixels, mean_pairwise_similarity,
                                         sample_indices)


def test_sample_indices_rate_and_cap():
    assert sample_indices(300, 30.0, 1.0, 100).tolist() == list(range(0, 300, 30))
    capped = sample_indices(3000, 30.0, 1.0, 8)
    assert len(capped) == 8 and capped[0] == 0 and capped[-1] == 2970
    assert sample_indices(10, 5.0, 10.0, 100).tolist() == list(range(10))


def test_held_frame_scores_one_and_changing_scenes_score_low():
    rng = np.random.default_rng(0)
    still = np.repeat(rng.integers(0, 255, (1, 32, 32, 3), dtype=np.uint8), 6, axis=0)
    moving = rng.integers(0, 255, (6, 32, 32, 3), dtype=np.uint8)
    assert mean_pairwise_similarity(embed_pixels(still)) == 1.0 or np.isclose(
        mean_pairwise_similarity(embed_pixels(still)), 1.0)
    assert mean_pairwise_similarity(embed_pixels(moving)) < 0.1
    assert np.isclose(mean_pairwise_similarity(embed_histogram(still)), 1.0)


def test_flat_frames_count_as_the_same_picture():
    black = np.zeros((4, 32, 32, 3), np.uint8)
    emb = embed_pixels(black)
    assert not emb.any()
    assert mean_pairwise_similarity(emb, flat=~emb.any(axis=1)) == 1.0


def test_similarity_is_the_mean_over_pairs():
    emb = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    assert np.isclose(mean_pairwise_similarity(emb), (0 + 1 + 0) / 3)
