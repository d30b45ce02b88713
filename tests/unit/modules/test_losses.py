"""The VMAs losses against cases whose answer is known."""

import torch

from vmas.modules.losses import beat_weighted_cross_entropy, contrastive_loss, music_features


def _case(seed=0, B=3, K=4, T=12, card=16):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, K, T, card, generator=g)
    codes = torch.randint(0, card, (B, K, T), generator=g)
    mask = torch.ones(B, K, T, dtype=torch.bool)
    for k in range(K):  # the delay pattern's invalid tail, filled with NaN as audiocraft does
        mask[:, k, T - k :] = False
    logits[~mask] = float("nan")
    return logits, codes, mask


def _plain(logits, codes, mask):
    """audiocraft's MusicGen loss: per-codebook CE over valid steps, averaged over codebooks."""
    per = []
    for k in range(logits.shape[1]):
        m = mask[:, k]
        per.append(torch.nn.functional.cross_entropy(logits[:, k][m], codes[:, k][m]))
    return torch.stack(per).mean()


def test_equal_weights_give_exactly_the_plain_loss():
    logits, codes, mask = _case()
    plain = _plain(logits, codes, mask)
    assert torch.allclose(beat_weighted_cross_entropy(logits, codes, mask), plain, atol=1e-6)
    for value in (1.0, 0.5, 3.0):
        weights = torch.full((3, 12), value)
        assert torch.allclose(beat_weighted_cross_entropy(logits, codes, mask, weights), plain, atol=1e-6)


def test_weights_emphasise_the_weighted_steps():
    logits, codes, mask = _case()
    weights = torch.full((3, 12), 0.5)
    weights[:, :3] = 1.0
    only_first = torch.zeros(3, 12)
    only_first[:, :3] = 1.0
    first_steps = mask.clone()
    first_steps[:, :, 3:] = False
    assert torch.allclose(beat_weighted_cross_entropy(logits, codes, mask, only_first),
                          _plain(logits, codes, first_steps), atol=1e-6)
    weighted = beat_weighted_cross_entropy(logits, codes, mask, weights)
    assert not torch.allclose(weighted, _plain(logits, codes, mask))


def test_nan_logits_of_invalid_steps_give_finite_gradients():
    logits, codes, mask = _case()
    logits.requires_grad_(True)
    beat_weighted_cross_entropy(logits, codes, mask, torch.rand(3, 12)).backward()
    assert torch.isfinite(logits.grad).all() and (logits.grad[~mask] == 0).all()


def test_music_features_are_expected_codebook_latents():
    K, card, D = 2, 3, 4
    codebooks = torch.randn(K, card, D)
    codes = torch.tensor([[[0, 1, 2], [2, 2, 0]]])  # [1, K, T]
    logits = torch.nn.functional.one_hot(codes, card).float() * 100  # certain predictions
    mask = torch.ones(1, K, 3, dtype=torch.bool)
    got = music_features(logits, mask, codebooks)
    expected = torch.stack([codebooks[0, codes[0, 0]] + codebooks[1, codes[0, 1]]]).mean(dim=1)
    assert torch.allclose(got, expected, atol=1e-4)


def test_contrastive_loss_prefers_matched_pairs_and_is_symmetric():
    torch.manual_seed(0)
    video = torch.randn(8, 16)
    matched = contrastive_loss(video + 0.01 * torch.randn(8, 16), video)
    shuffled = contrastive_loss(video[torch.randperm(8)], video)
    assert matched < 0.1 < shuffled
    music = torch.randn(8, 16)
    assert torch.allclose(contrastive_loss(music, video), contrastive_loss(video, music), atol=1e-6)
    assert contrastive_loss(music[:1], video[:1]) == 0  # one sample has no negatives
