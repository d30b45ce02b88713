import numpy as np
import pytest
import torch
import yaml

from vmas.curation.remove_vocals import demucs_separate, repet_sim, resolve_method, sdr_db
from vmas.errors import StageError

SOURCES = ["drums", "bass", "other", "vocals"]


@pytest.fixture(scope="module")
def demucs_repo(tmp_path_factory):
    """A demucs model folder in demucs' own layout, with a tiny randomly initialised HTDemucs."""
    from demucs.htdemucs import HTDemucs
    from demucs.states import serialize_model
    from omegaconf import OmegaConf

    torch.manual_seed(0)
    model = HTDemucs(sources=SOURCES, channels=8, depth=2, t_layers=1, nfft=1024, bottom_channels=0, dconv_comp=2,
                     dconv_depth=1, segment=1)
    with torch.no_grad():  # demucs' weight rescaling gives NaN for one-element convs at this tiny size
        for p in model.parameters():
            p.nan_to_num_(0.0)
    repo = tmp_path_factory.mktemp("demucs")
    torch.save(serialize_model(model, OmegaConf.create({}), half=False), repo / "0123abcd.th")
    (repo / "htdemucs.yaml").write_text(yaml.safe_dump({"models": ["0123abcd"]}))
    return repo, model


def test_demucs_loads_from_a_local_repo_and_separates(demucs_repo):
    from vmas.curation.remove_vocals import load_demucs

    repo, original = demucs_repo
    loaded = load_demucs("htdemucs", str(repo))
    inner = loaded.models[0] if hasattr(loaded, "models") else loaded
    for (name, a), b in zip(original.state_dict().items(), inner.state_dict().values()):
        assert torch.equal(a, b), name  # the production path restores the exact weights
    sr = 32000
    y = (0.1 * np.sin(2 * np.pi * 220 * np.arange(int(1.5 * sr)) / sr)).astype(np.float32)
    no_vocals, vocals = demucs_separate(y, sr, "htdemucs", str(repo), segment_s=1.0, device="cpu")
    assert no_vocals.shape == vocals.shape == y.shape
    assert np.all(np.isfinite(no_vocals)) and np.all(np.isfinite(vocals))


def test_method_resolution(tmp_path, demucs_repo, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    repo, _ = demucs_repo
    assert resolve_method("auto", None, "htdemucs", tmp_path / "view") == ("repet", None)
    assert resolve_method("auto", repo, "htdemucs", tmp_path / "view") == ("htdemucs", repo)
    assert resolve_method("repet", repo, "htdemucs", tmp_path / "view") == ("repet", None)
    with pytest.raises(StageError, match="remove_vocals.model_repo"):
        resolve_method("htdemucs", tmp_path, "htdemucs", tmp_path / "view")


def test_weights_found_in_the_torch_hub_cache(tmp_path, demucs_repo, monkeypatch):
    """A hub cache holding htdemucs' checkpoint (named <sig>-<sha256 prefix>.th, as torch.hub stores it)."""
    import hashlib

    from demucs.pretrained import REMOTE_ROOT

    from vmas.curation.remove_vocals import load_demucs

    repo, original = demucs_repo
    (sig,) = yaml.safe_load((REMOTE_ROOT / "htdemucs.yaml").read_text())["models"]
    checkpoints = tmp_path / "torch-home" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    data = (repo / "0123abcd.th").read_bytes()
    (checkpoints / f"{sig}-{hashlib.sha256(data).hexdigest()[:8]}.th").write_bytes(data)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    method, view = resolve_method("auto", None, "htdemucs", tmp_path / "view")
    assert method == "htdemucs" and (view / "htdemucs.yaml").is_file()
    loaded = load_demucs("htdemucs", str(view))
    inner = loaded.models[0] if hasattr(loaded, "models") else loaded
    assert all(torch.equal(a, b) for a, b in zip(original.state_dict().values(), inner.state_dict().values()))


def test_sdr():
    ref = np.sin(np.linspace(0, 100, 10000))
    assert sdr_db(ref, ref) > 100
    assert np.isclose(sdr_db(ref, 0.9 * ref), 20.0)


def test_repet_keeps_a_repeating_loop_and_takes_out_a_glide():
    sr = 16000
    t = np.arange(6 * sr) / sr
    loop = np.tile(np.sin(2 * np.pi * 110 * t[: sr // 2]) * np.exp(-t[: sr // 2] * 8), 12)  # repeats 12 times
    glide = 0.5 * np.sin(2 * np.pi * np.cumsum(np.linspace(500, 900, len(t))) / sr) * (t > 2) * (t < 4)
    background, foreground = repet_sim(loop + glide, sr)
    assert sdr_db(loop, background) > sdr_db(loop, loop + glide) + 3
    assert np.allclose(background + foreground, loop + glide)


def test_hub_dir_follows_torchs_rule_without_importing_torch(tmp_path, monkeypatch):
    import sys

    from vmas.curation.remove_vocals import torch_hub_dir

    for env in ({"TORCH_HOME": str(tmp_path / "th")}, {"XDG_CACHE_HOME": str(tmp_path / "xdg")}):
        monkeypatch.delenv("TORCH_HOME", raising=False)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        expected = torch.hub.get_dir()
        with monkeypatch.context() as m:
            m.delitem(sys.modules, "torch")  # as in a process that never imported it
            assert str(torch_hub_dir()) == expected
