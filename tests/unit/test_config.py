from pathlib import Path

import pytest
import yaml

from vmas.config import Config, ConfigError, apply_override, load_config, use_profile


def test_profiles_load_and_paper_is_the_published_scale(repo):
    demo = load_config(repo / "configs" / "demo.yaml")
    paper = load_config(repo / "configs" / "paper.yaml")
    assert demo.profile == "demo" and paper.profile == "paper"
    assert paper.clip.seconds == 10
    assert (paper.audio.sample_rate, paper.audio.channels) == (32000, 1)
    assert (paper.codec.n_q, paper.codec.cardinality, paper.codec.frame_rate) == (4, 2048, 50)
    assert (paper.video.frames, paper.video.fps, paper.video.size) == (96, 9.6, 224)
    assert paper.filter_static.threshold == 0.7
    enc = paper.model.video_encoder
    assert (enc.embed_dim, enc.stages, enc.q_strides) == (96, [2, 3, 16, 3], [(1, 4, 4), (1, 7, 7), (1, 2, 2)])
    assert (enc.patch_kernel, enc.patch_stride, enc.patch_padding) == ((3, 7, 7), (2, 4, 4), (1, 3, 3))
    dec = paper.model.music_decoder
    assert (dec.dim, dec.num_layers, dec.num_heads) == (1536, 48, 24)


def test_params_yaml_is_the_demo_profile(repo):
    """params.yaml (what DVC reads) is the active profile: the demo one, complete and valid."""
    active = load_config(repo / "params.yaml")
    assert active == load_config(repo / "configs" / "demo.yaml")


def test_use_profile_writes_complete_params(tmp_path, monkeypatch, repo):
    monkeypatch.chdir(repo)
    target = tmp_path / "params.yaml"
    cfg = use_profile("paper", target)
    assert load_config(target) == cfg
    assert set(yaml.safe_load(target.read_text())) == set(Config.model_fields)


def test_unknown_key_names_the_path_and_suggests(repo):
    with pytest.raises(ConfigError) as err:
        load_config(repo / "configs" / "demo.yaml", overrides=["filter_static.treshold=0.5"])
    message = str(err.value)
    assert "unknown key 'filter_static.treshold'" in message
    assert "did you mean 'filter_static.threshold'" in message
    assert "demo.yaml" in message


def test_bad_value_names_the_path_and_the_expected_type(repo):
    with pytest.raises(ConfigError) as err:
        load_config(repo / "configs" / "demo.yaml",
                    overrides=["synth.n=abc", "filter_static.threshold=1.5", "synth.fps_choices=[24, 29]"])
    problems = err.value.problems
    assert any(p.startswith("synth.n: expected int (> 0), got 'abc'") for p in problems)
    assert any(p.startswith("filter_static.threshold: expected float (>= 0, <= 1), got 1.5") for p in problems)
    assert any(p.startswith("synth.fps_choices[1]: expected one of 24, 25, 30, got 29") for p in problems)


def test_unknown_section_and_missing_key(tmp_path, repo):
    data = yaml.safe_load((repo / "configs" / "demo.yaml").read_text())
    del data["train"]["lr"]
    data["trainer"] = {}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "train.lr: missing required key (expected float (> 0))" in str(err.value)
    assert "unknown key 'trainer'" in str(err.value)
    assert str(path) in str(err.value)


def test_cross_field_consistency_is_checked(repo):
    with pytest.raises(ConfigError, match=r"video.frames / video.fps = 25 s must equal clip.seconds = 4 s"):
        load_config(repo / "configs" / "demo.yaml", overrides=["video.fps=2"])
    with pytest.raises(ConfigError, match=r"q_strides\[1\] spatial stride 3x3 does not divide the 4x4 token grid"):
        load_config(repo / "configs" / "demo.yaml", overrides=["model.video_encoder.q_strides=[[1,2,2],[1,3,3]]"])
    with pytest.raises(ConfigError, match="min_duration_s .* must not exceed max_duration_s"):
        load_config(repo / "configs" / "demo.yaml", overrides=["synth.min_duration_s=40"])


def test_overrides_parse_yaml_values():
    data = {"a": {"b": 1}}
    apply_override(data, "a.b=0.5")
    apply_override(data, "a.c=[1, 2]")
    apply_override(data, "a.d=null")
    apply_override(data, "e.f=text")
    assert data == {"a": {"b": 0.5, "c": [1, 2], "d": None}, "e": {"f": "text"}}
    with pytest.raises(ConfigError, match="expected KEY.PATH=VALUE"):
        apply_override(data, "a.b")
    with pytest.raises(ConfigError, match="a.b is a float, not a section"):
        apply_override(data, "a.b.c=1")


def test_override_changes_only_its_key(repo):
    base = load_config(repo / "configs" / "demo.yaml")
    changed = load_config(repo / "configs" / "demo.yaml", overrides=["synth.n=3", "train.precision=bf16-mixed"])
    assert (changed.synth.n, changed.train.precision) == (3, "bf16-mixed")
    assert changed.model_copy(update={"synth": base.synth, "train": base.train}) == base


def test_profile_by_name_and_unknown_profile(repo, monkeypatch):
    monkeypatch.chdir(repo)
    assert load_config(profile="paper").profile == "paper"
    with pytest.raises(ConfigError, match="no file nope.yaml"):
        load_config(profile="nope")
    with pytest.raises(ConfigError, match="not both"):
        load_config(Path("params.yaml"), profile="demo")


def test_not_a_mapping_and_bad_yaml(tmp_path):
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    (tmp_path / "broken.yaml").write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(tmp_path / "list.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "broken.yaml")
    with pytest.raises(ConfigError, match="file does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_a_device_count_given_on_the_command_line_is_accepted():
    from vmas.config import load_config

    cfg = load_config(overrides=["train.devices=8", "train.num_nodes=4"])  # as the cluster jobs pass them
    assert (cfg.train.devices, cfg.train.num_nodes) == ("8", 4)


def test_a_config_written_with_the_old_registry_section_still_loads(tmp_path, repo, caplog):
    """``registry`` became ``register`` (the stage's name): old files and --set keys still work, with a warning."""
    data = yaml.safe_load((repo / "configs" / "demo.yaml").read_text())
    data["registry"] = {**data.pop("register"), "name": "old-name"}
    old = tmp_path / "old.yaml"
    old.write_text(yaml.safe_dump(data))
    assert load_config(old).register.name == "old-name"
    assert "now called 'register'" in caplog.text
    assert load_config(repo / "configs" / "demo.yaml", overrides=["registry.require=any"]).register.require == "any"
    data["register"] = data["registry"]
    old.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="old name"):
        load_config(old)
