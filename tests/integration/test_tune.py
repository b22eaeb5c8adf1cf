"""A real Ray Tune sweep: Optuna TPE + ASHA over 4 trials on a local 2-CPU Ray that the CLI
starts itself; each trial is one Ray Train run. Checks the table, best config, plots and
TensorBoard files. (The restore scenario runs on the shared multi-node cluster, in
test_ray_chaos.py.)"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from streamguard import config as cfgmod
from tests.integration.helpers import run_cli

pytest.importorskip("ray")
pytest.importorskip("optuna")
pytestmark = pytest.mark.timeout(900)

SMALL = ["data.synthetic_size=320", "model.gnn.layers=2", "train.batch_size=32", "train.early_stopping_patience=0",
         "ray.num_workers=1"]


def write_sweep(path, name, *, samples=4, scheduler="asha", epochs=3):
    path.write_text(yaml.safe_dump({
        "name": name, "num_samples": samples, "seed": 7,
        "search": {"optim.lr": "loguniform(1e-3, 1e-2)", "model.gnn.hidden": "choice([16, 32])"},
        "overrides": {"train.epochs": epochs, "metrics.plots": False},
        "scheduler": {"type": scheduler, "grace_period": 1, "reduction_factor": 2}}))
    return path


def test_four_trial_optuna_asha_sweep_writes_table_best_config_and_plots(tmp_path):
    sweep = write_sweep(tmp_path / "sweep.yaml", "s4")
    runs = tmp_path / "sweeps"
    proc = run_cli("tune", "--sweep", str(sweep), *SMALL, f"run.storage_path={runs}", timeout=800)
    root = runs / "s4"
    assert "Sweep s4: 4 trials" in proc.stdout
    table = pd.read_parquet(root / "results.parquet")
    assert len(table) == 4 and table["trial_id"].is_unique
    assert table["val_f1"].notna().all()  # every trial reported, even those ASHA stopped early
    assert {"param:optim.lr", "param:model.gnn.hidden"} <= set(table.columns)
    assert table["param:optim.lr"].between(1e-3, 1e-2).all()
    assert len(pd.read_csv(root / "results.csv")) == 4
    finished = table[table["finished"]]
    assert len(finished) >= 1 and set(table["status"]) <= {"completed", "stopped_early"}
    for row in table.itertuples():
        assert row.run_dir == str(root / "runs" / row.trial_id)
        assert (Path(row.run_dir) / "metrics.json").exists() == row.finished  # finished trials were scored
    assert finished["test_f1"].notna().all()
    best = cfgmod.load(config_file=root / "best_config.yaml")  # what `streamguard train --config` reads
    best_row = table.loc[table["val_f1"].idxmax()]
    assert best.optim.lr == pytest.approx(best_row["param:optim.lr"]) and best.model.gnn.hidden == best_row["param:model.gnn.hidden"]
    assert best.train.epochs == 3 and best.run.name == "s4-best"
    for png in ("optimization_history.png", "parallel_coordinate.png", "param_importances.png"):
        assert (root / "plots" / png).stat().st_size > 5000, png
    events = list(root.glob("*/events.out.tfevents.*"))
    assert len(events) == 4  # TensorBoard, one per trial: `tensorboard --logdir <sweep>`
