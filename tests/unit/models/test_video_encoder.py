"""The temporal video encoder: shapes, time kept, windows, Hiera checkpoints, FLOPs."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from vmas.models.video_encoder import VideoEncoder, VideoEncoderSpec, load_hiera_weights, pool_grid

DEMO = VideoEncoderSpec(frames=16, size=64, embed_dim=32, num_heads=1, stages=(1, 1, 1),
                        q_strides=((1, 4, 4), (1, 4, 4)), mask_unit_attn=(True, False, False))
PAPER = VideoEncoderSpec(frames=96, size=224, embed_dim=96, num_heads=1, stages=(2, 3, 16, 3),
                         q_strides=((1, 4, 4), (1, 7, 7), (1, 2, 2)))


def test_demo_shape_one_feature_per_frame_pair():
    torch.manual_seed(0)
    encoder = VideoEncoder(DEMO)
    out = encoder(torch.randn(2, 3, 16, 64, 64))
    assert out.shape == (2, 8, 128) and encoder.out_dim == 128


def test_paper_shape_and_flops_on_meta():
    """96 frames of 224 px -> (48, 768); the FLOP count is what the closing note reports."""
    with torch.device("meta"):
        encoder = VideoEncoder(PAPER)
        frames = torch.empty(1, 3, 96, 224, 224)
        with FlopCounterMode(display=False) as counter:
            out = encoder(frames)
    assert out.shape == (1, 48, 768)
    assert 100e9 < counter.get_total_flops() < 200e9  # 151.8 GFLOPs (2 per multiply-add); paper 130.7


def test_time_is_kept_each_output_step_sees_its_own_frames():
    torch.manual_seed(0)
    encoder = VideoEncoder(DEMO).eval()
    frames = torch.randn(1, 3, 16, 64, 64)
    base = encoder(frames)
    changed = frames.clone()
    changed[:, :, 14:] += 1.0  # the last frame pair only
    delta = (encoder(changed) - base).abs().amax(dim=-1)[0]
    # global attention in the last stages mixes time, but the changed step moves most
    assert int(delta.argmax()) == 7


def test_pool_grid_is_blockwise_max():
    x = torch.arange(2 * 4 * 4, dtype=torch.float32).view(1, 2, 4, 4, 1)
    pooled = pool_grid(x, (1, 2, 2))
    assert pooled.shape == (1, 2, 2, 2, 1) and pooled[0, 0, 0, 0, 0] == 5 and pooled[0, 1, 1, 1, 0] == 31


def test_mask_unit_attention_is_local():
    """With mask units, a token only sees its own unit: changing another unit leaves it alone."""
    spec = VideoEncoderSpec(frames=2, size=64, embed_dim=16, num_heads=1, stages=(1,), q_strides=(),
                            mask_unit_size=(1, 4, 4), mask_unit_attn=(True,))
    torch.manual_seed(0)
    encoder = VideoEncoder(spec).eval()
    x = torch.randn(1, 1, 16, 16, 16)
    block = encoder.blocks[0]
    y = block(x)
    x2 = x.clone()
    x2[:, :, 8:, 8:] += 3.0  # another unit
    y2 = block(x2)
    assert torch.allclose(y[:, :, :4, :4], y2[:, :, :4, :4], atol=1e-6)
    assert not torch.allclose(y[:, :, 8:12, 8:12], y2[:, :, 8:12, 8:12])


def test_hiera_checkpoint_loads_with_temporal_position_interpolated(tmp_path):
    """A Hiera 16-frame checkpoint (8 time steps) into a 32-frame encoder (16 steps), as Hiera saves it."""
    torch.manual_seed(0)
    source_spec = VideoEncoderSpec(**{**DEMO.__dict__})
    source = VideoEncoder(source_spec)
    state = {k: v.clone() for k, v in source.state_dict().items()}
    state["head.projection.weight"] = torch.randn(400, 128)  # Hiera's classifier: not used here
    torch.save({"model_state": state}, tmp_path / "hiera_base_16x224.pth")
    target = VideoEncoder(VideoEncoderSpec(**{**DEMO.__dict__, "frames": 32}))
    report = load_hiera_weights(target, str(tmp_path / "hiera_base_16x224.pth"))
    assert report["missing"] == [] and report["unused"] == ["head.projection.weight"]
    loaded = target.state_dict()
    assert torch.equal(loaded["blocks.1.attn.qkv.weight"], state["blocks.1.attn.qkv.weight"])
    assert loaded["pos_embed_temporal"].shape == (1, 16, 32)
    assert torch.allclose(loaded["pos_embed_temporal"].mean(1), state["pos_embed_temporal"].mean(1), atol=0.02)
    with pytest.raises(ValueError, match="no tensor matches"):
        torch.save({"other": torch.zeros(3)}, tmp_path / "bad.pth")
        load_hiera_weights(target, str(tmp_path / "bad.pth"))
