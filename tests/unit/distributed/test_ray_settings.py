"""Pure logic of the Ray wiring: settings mapping, storage for RunConfig, snapshot repair."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("ray")

from streamguard import config as cfgmod  # noqa: E402
from streamguard.distributed import train as rtrain  # noqa: E402
from streamguard.rundir import RunDir  # noqa: E402


def test_health_check_settings_become_ray_train_environment():
    cfg = cfgmod.load("quickstart", ["ray.report_poll_interval_s=0.5", "ray.worker_group_start_timeout_s=90",
                                     "ray.preemption_poll_interval_s=2"])
    env = rtrain.train_env(cfg.ray)
    assert env["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] == "0.5"
    assert env["RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"] == "90.0"
    assert env["RAY_TRAIN_PREEMPTION_POLL_INTERVAL_S"] == "2.0"
    from ray.train.v2._internal.constants import ENV_VARS_TO_PROPAGATE

    assert set(env) <= ENV_VARS_TO_PROPAGATE  # Ray carries them from the driver to controller and workers
    assert rtrain.system_config(cfg.ray) == {"health_check_period_ms": 1000, "health_check_failure_threshold": 5}


def test_local_storage_is_made_absolute_for_workers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = cfgmod.load("quickstart", ["run.storage_path=runs"])
    path, fs = rtrain.storage_for_ray(cfg)
    assert fs is None and Path(path) == tmp_path / "runs"
    assert rtrain.resolved(cfg).run.storage_path == str(tmp_path / "runs")


def test_s3_storage_is_a_pyarrow_filesystem_with_the_configured_endpoint(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    cfg = cfgmod.load("quickstart", ["run.storage_path=s3://bucket/some/prefix/", "storage.endpoint_url=http://127.0.0.1:9000",
                                     "storage.region=eu-west-1"])
    path, fs = rtrain.storage_for_ray(cfg)
    assert path == "bucket/some/prefix"  # no s3:// when a filesystem is given
    assert fs.type_name == "s3" and fs.region == "eu-west-1"
    assert "127.0.0.1:9000" in repr(fs.__reduce__())  # endpoint_override and scheme travel to the workers
    assert rtrain.resolved(cfg) is cfg


def test_cuda_without_gpus_is_a_config_error():
    cfg = cfgmod.load("quickstart", ["train.device=cuda"])
    with pytest.raises(Exception, match="gpus-per-worker"):
        rtrain.check(cfg)


def _snapshot(names):
    results = [{"version": 0, "checkpoint_dir_name": f"checkpoints/{n}", "metrics": {}} for n in names]
    return {"ray_version": "2.60.0", "checkpoint_results": results, "checkpoint_report_indices": list(range(len(names))),
            "latest_checkpoint_result": results[-1], "pending_training_results": [],
            "validated_checkpoint_dir_names": [f"checkpoints/{names[0]}"]}


def test_ray_snapshot_drops_checkpoints_our_retention_pruned(tmp_path):
    run = RunDir(str(tmp_path), "r")
    for name in ("step_000000010", "step_000000015"):
        (run.local / "checkpoints" / name).mkdir(parents=True)
    (run.local / rtrain.RAY_SNAPSHOT).write_text(json.dumps(_snapshot(["step_000000005", "step_000000010",
                                                                       "step_000000015", "step_000000020"])))
    dropped = rtrain.reconcile_ray_snapshot(run)
    assert dropped == ["checkpoints/step_000000005", "checkpoints/step_000000020"]
    snap = json.loads((run.local / rtrain.RAY_SNAPSHOT).read_text())
    assert [r["checkpoint_dir_name"] for r in snap["checkpoint_results"]] == ["checkpoints/step_000000010",
                                                                               "checkpoints/step_000000015"]
    assert snap["checkpoint_report_indices"] == [1, 2]
    assert snap["latest_checkpoint_result"]["checkpoint_dir_name"] == "checkpoints/step_000000015"
    assert snap["validated_checkpoint_dir_names"] == []
    assert rtrain.reconcile_ray_snapshot(run) == []  # consistent now: untouched


def test_unknown_snapshot_layout_is_removed_not_guessed(tmp_path):
    run = RunDir(str(tmp_path), "r")
    (run.local / rtrain.RAY_SNAPSHOT).write_text(json.dumps({"checkpoints": ["x"]}))
    assert rtrain.reconcile_ray_snapshot(run) == []
    assert not (run.local / rtrain.RAY_SNAPSHOT).exists()
    assert rtrain.reconcile_ray_snapshot(run) == []  # no snapshot: first driver
