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


def test_resnet18_embedding_loads_a_local_state_dict(tmp_path):
    import torch
    import torchvision

    from vmas.curation.filter_static import embed_resnet18

    torch.manual_seed(0)
    model = torchvision.models.resnet18()
    torch.save(model.state_dict(), tmp_path / "resnet18.pt")
    frames = np.random.default_rng(0).integers(0, 255, (3, 48, 64, 3), dtype=np.uint8)
    emb = embed_resnet18(frames, str(tmp_path / "resnet18.pt"))
    assert emb.shape == (3, 512) and np.allclose(np.linalg.norm(emb, axis=1), 1.0)
    model.fc = torch.nn.Identity()
    with torch.no_grad():  # the loaded weights are the written ones: same features as the original
        x = torch.nn.functional.interpolate(torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255, (224, 224),
                                            mode="bilinear", align_corners=False)
        mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        ref = model.eval()((x - mean) / std).numpy()
    assert np.allclose(emb, ref / np.linalg.norm(ref, axis=1, keepdims=True), atol=1e-5)
