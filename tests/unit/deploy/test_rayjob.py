"""The RayJob/ConfigMap builder behind `streamguard submit` (pure logic; the chart comparison is in
tests/k8s/test_chart.py)."""

from __future__ import annotations

import pytest
import yaml

from streamguard import config as cfgmod
from streamguard.deploy import rayjob as rj
from streamguard.errors import ConfigError


@pytest.mark.parametrize("run_name, expected", [
    ("devign-gnn", "devign-gnn"),
    ("QuickStart_GPU.1", "quickstart-gpu-1"),
    ("2024-sweep", "sg-2024-sweep"),
    ("a" * 63, "a" * 47),
    ("x" * 46 + "-y", "x" * 46),
])
def test_rayjob_names_are_kuberay_valid(run_name, expected):
    assert rj.rayjob_name(run_name) == expected


def test_group_image_override_never_inherits_a_pinned_digest():
    values = rj.default_values()
    values["image"]["digest"] = "sha256:" + "a" * 64
    assert rj.image_ref(values) == f"ghcr.io/example/streamguard@sha256:{'a' * 64}"
    assert rj.image_ref(values, {"tag": "0.1.0-cuda"}) == "ghcr.io/example/streamguard:0.1.0-cuda"
    assert rj.image_ref(values, {"repository": "r.example/sg"}) == f"r.example/sg@sha256:{'a' * 64}"


def test_values_merge_like_helm():
    merged = rj._helm_merge({"a": {"b": 1, "c": 2}, "d": [1]}, {"a": {"b": None, "e": 3}, "d": [2], "f": None})
    assert merged == {"a": {"c": 2, "e": 3}, "d": [2], "f": None}


def test_config_walk_preset_values_file_overrides(tmp_path):
    values = rj._helm_merge(rj.default_values(), {
        "storage": {"uri": "s3://my-bucket/runs", "region": "eu-west-1"},
        "job": {"runName": "from-values"},
        "runConfig": {"config": {"train": {"epochs": 7, "batch_size": 16}}}})
    extra = tmp_path / "extra.yaml"
    extra.write_text("train:\n  epochs: 5\n")
    cfg = rj.resolve_config("quickstart", values, ["train.batch_size=8"], config_file=extra)
    assert (cfg.train.epochs, cfg.train.batch_size) == (5, 8)  # --config over values, key=value over both
    assert cfg.run.name == "from-values" and cfg.run.storage_path == "s3://my-bucket/runs"
    assert cfg.storage.region == "eu-west-1" and cfg.model.gnn.hidden == 64  # the rest is the preset's


def test_build_carries_the_resolved_config(tmp_path):
    values = rj.default_values()
    cfg = rj.resolve_config("quickstart", values, ["run.name=Smoke_1", "train.epochs=1"])
    job, cm = rj.build(cfg, "quickstart", values, namespace="ml", release="sg")
    assert job["metadata"]["name"] == "smoke-1" and cm["metadata"]["name"] == "smoke-1-config"
    assert job["metadata"]["labels"]["streamguard/run"] == "Smoke_1"
    path = tmp_path / "run.yaml"
    path.write_text(cm["data"]["run.yaml"])
    assert cfgmod.load("quickstart", config_file=path) == cfg  # what ray_jobs/train.py will load
    volumes = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["volumes"]
    assert {"name": "run-config", "configMap": {"name": "smoke-1-config"}} in volumes
    assert yaml.safe_load(rj.to_yaml(cm, job).split("---\n")[1])["kind"] == "RayJob"


def test_bad_values_and_guards_fail_with_the_field(tmp_path):
    bad = tmp_path / "v.yaml"
    bad.write_text("workerGroups:\n  gpu-spot:\n    replicas: many\n")
    with pytest.raises(ConfigError, match="workerGroups.gpu-spot.replicas"):
        rj.load_values([bad])
    with pytest.raises(ConfigError, match="cannot read values file"):
        rj.load_values([tmp_path / "missing.yaml"])
    values = rj._helm_merge(rj.default_values(), {"job": {"shutdownAfterJobFinishes": False}})
    with pytest.raises(ConfigError, match="shutdownAfterJobFinishes"):
        rj.rayjob_spec("sg", values, values["job"], "python x.py", "cm")
