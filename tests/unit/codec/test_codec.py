"""EnCodec interface and pretrained loading, with checkpoints the tests write in the real formats."""

import pytest
import torch

from vmas.codec import Codec, CodecLoadingError, build_encodec, encodec_xp_config, load_codec, save_codec

SR = 32000


@pytest.fixture(scope="module")
def small_encodec():
    torch.manual_seed(0)
    cfg = encodec_xp_config(n_filters=4, dimension=16, lstm=0)
    model = build_encodec(cfg).eval()
    with torch.no_grad():  # give the quantizer distinct codebooks (an untrained one has none yet)
        for layer in model.quantizer.vq.layers:
            layer._codebook.embed.copy_(torch.randn_like(layer._codebook.embed))
            layer._codebook.inited.fill_(1)
    return model, cfg


def _audio(seconds=1.0, batch=2):
    torch.manual_seed(1)
    return 0.1 * torch.randn(batch, 1, int(seconds * SR))


def test_interface_shapes_and_ranges(small_encodec):
    codec = Codec(small_encodec[0])
    assert (codec.sample_rate, codec.frame_rate, codec.num_codebooks, codec.cardinality) == (SR, 50, 4, 2048)
    codes = codec.encode(_audio(2.0))
    assert codes.shape == (2, 4, 100) and codes.dtype == torch.int64
    assert int(codes.min()) >= 0 and int(codes.max()) < 2048
    assert codec.decode(codes).shape == (2, 1, 2 * SR)
    assert codec.codebook_embeddings().shape == (4, 2048, 16)


def test_audiocraft_checkpoint_round_trip(small_encodec, tmp_path):
    model, cfg = small_encodec
    save_codec(model, cfg, tmp_path / "compression_state_dict.bin")
    wav = _audio()
    expected = Codec(model).encode(wav)
    for where in (tmp_path / "compression_state_dict.bin", tmp_path):  # the file, or the folder holding it
        loaded = load_codec(where)
        assert torch.equal(loaded.encode(wav), expected)
        assert torch.equal(loaded.codebook_embeddings(), Codec(model).codebook_embeddings())


def test_transformers_encodec_folder(tmp_path):
    from transformers import EncodecConfig, EncodecModel

    torch.manual_seed(0)
    config = EncodecConfig(sampling_rate=SR, audio_channels=1, num_filters=4, hidden_size=16, codebook_dim=16,
                           codebook_size=2048, upsampling_ratios=[8, 5, 4, 4], target_bandwidths=[2.2],
                           num_lstm_layers=1, normalize=False, use_causal_conv=False)
    model = EncodecModel(config).eval()
    model.save_pretrained(tmp_path / "encodec_32khz")
    wav = _audio()
    with torch.no_grad():
        expected = model.encode(wav, None, 2.2)[0][0]
    codec = load_codec(tmp_path / "encodec_32khz")
    assert (codec.num_codebooks, codec.frame_rate) == (4, 50)
    codes = codec.encode(wav)
    assert codes.shape == (2, 4, 50) and torch.equal(codes, expected)
    assert codec.codebook_embeddings().shape == (4, 2048, 16)


def test_musicgen_pointer_resolves_only_locally(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    torch.save({"pretrained": "facebook/encodec_32khz"}, tmp_path / "compression_state_dict.bin")
    with pytest.raises(CodecLoadingError, match="facebook/encodec_32khz: no local transformers EnCodec"):
        load_codec(tmp_path)


def test_bad_paths_say_what_is_wrong(tmp_path):
    with pytest.raises(CodecLoadingError, match="does not exist"):
        load_codec(tmp_path / "nope")
    with pytest.raises(CodecLoadingError, match="neither an audiocraft codec"):
        load_codec(tmp_path)
    torch.save({"weights": torch.zeros(1)}, tmp_path / "x.bin")
    with pytest.raises(CodecLoadingError, match="not an audiocraft compression checkpoint"):
        load_codec(tmp_path / "x.bin")
