"""Sweep specs: domains, validation against the config, trial configs (pure logic)."""

from __future__ import annotations

import pytest

from streamguard import config as cfgmod
from streamguard.errors import ConfigError
from streamguard.sweep import (
    builtin_sweeps,
    load_sweep,
    parse_domain,
    seed_sweep,
    trial_config,
    validate,
)


def test_domains_parse_literals_only():
    assert parse_domain("optim.lr", "loguniform(1e-5, 1e-3)").args == (1e-5, 1e-3)
    assert parse_domain("k", "choice([32, 64, 'x'])").args == ([32, 64, "x"],)
    assert parse_domain("k", " quniform(0.0, 1.0, 0.1) ").kind == "quniform"
    assert parse_domain("k", "randint(2, 6)").sample_points() == [2, 5]  # upper bound exclusive
    for bad, msg in [("loguniform(0, 1)", "positive lower bound"), ("uniform(2, 1)", "low < high"),
                     ("choice([])", "non-empty list"), ("normal(0, 1)", "unknown domain"),
                     ("uniform(__import__('os'), 1)", "must be literals"), ("randint(1.5, 3)", "integers"),
                     (0.1, "expected one of"), ("quniform(0, 1)", "takes 3 numbers")]:
        with pytest.raises(ConfigError, match=msg):
            parse_domain("optim.lr", bad)


def test_shipped_sweep_is_valid_against_its_preset():
    assert "quickstart" in builtin_sweeps()
    spec = load_sweep("quickstart")
    validate(cfgmod.load("quickstart"), spec)
    assert spec.scheduler.type == "asha" and spec.num_samples >= 4


def test_validation_names_the_bad_key_or_bound(tmp_path):
    base = cfgmod.load("quickstart")
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nsearch:\n  optim.lrr: loguniform(1e-4, 1e-2)\n")
    with pytest.raises(ConfigError, match=r"optim\.lrr.*unknown key"):
        validate(base, load_sweep(path))
    path.write_text("name: s\nsearch:\n  model.gnn.hidden: choice([2, 64])\n")
    with pytest.raises(ConfigError, match=r"model\.gnn\.hidden.*at 2"):
        validate(base, load_sweep(path))
    path.write_text("name: s\nsearch:\n  optim.lr: loguniform(1e-4, 1e-2)\nbogus: 1\n")
    with pytest.raises(ConfigError, match="bogus"):
        load_sweep(path)
    path.write_text("name: s\nmetric: accuracy\n")
    with pytest.raises(ConfigError, match="metric"):
        load_sweep(path)
    with pytest.raises(ConfigError, match="no sweep file"):
        load_sweep(tmp_path / "missing.yaml")


def test_trial_config_layers_base_overrides_and_params():
    spec = load_sweep("quickstart")
    cfg = trial_config(cfgmod.load("quickstart"), spec, {"optim.lr": 0.004, "model.gnn.hidden": 32},
                       trial_id="abc123", storage_path="s3://b/sweeps/quickstart-sweep/runs")
    assert (cfg.optim.lr, cfg.model.gnn.hidden, cfg.train.epochs) == (0.004, 32, spec.overrides["train.epochs"])
    assert (cfg.run.name, cfg.run.storage_path) == ("abc123", "s3://b/sweeps/quickstart-sweep/runs")


def test_seed_sweep_varies_only_the_seed():
    spec = seed_sweep("r-seeds", 3, first_seed=5)
    assert spec.domains()["run.seed"].args == ([5, 6, 7],) and spec.scheduler.type == "fifo"
    assert spec.overrides == {"data.split_seed": 5}
