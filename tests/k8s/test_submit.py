"""`streamguard submit` end to end: the real CLI in a subprocess, the real kubernetes client,
against a fake API server on 127.0.0.1 that validates RayJobs against the KubeRay CRD schema."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
import yaml

from streamguard import config as cfgmod
from tests.conftest import cli_env
from tests.k8s import kube
from tests.k8s.fake_apiserver import FakeKubeAPI

pytest.importorskip("kubernetes", reason="the k8s extra (kubernetes client) runs `streamguard submit`")
SPOT = str(kube.CHART / "examples" / "gpu-spot.yaml")


def submit(*args: str, kubeconfig: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = cli_env()
    env.pop("KUBERNETES_SERVICE_HOST", None)
    if kubeconfig:
        env["KUBECONFIG"] = kubeconfig
    return subprocess.run([sys.executable, "-m", "streamguard", "submit", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=kube.REPO, check=False)


@pytest.fixture()
def api(tmp_path):
    kube.need_crds()  # the fake server validates RayJobs against the CRD schema
    with FakeKubeAPI() as server:
        server.add("serviceaccounts", "ml", {"apiVersion": "v1", "kind": "ServiceAccount",
                                             "metadata": {"name": "streamguard"}})
        path = tmp_path / "kubeconfig"
        path.write_text(server.kubeconfig(namespace="ml"))
        server.kubeconfig_path = str(path)
        yield server


def test_dry_run_prints_a_valid_rayjob_and_the_resolved_config():
    done = submit("--preset", "devign-gnn", "-f", SPOT, "train.epochs=2", "--dry-run", "-n", "ml")
    assert done.returncode == 0, done.stderr
    cm, job = list(yaml.safe_load_all(done.stdout))
    if kube.crds_present():
        kube.validate_crd(job)
    assert not kube.kuberay_rules(job)
    kube.validate_builtin(cm)
    assert job["metadata"]["name"] == "devign-gnn-spot"  # from run.name in the values
    assert job["spec"]["entrypoint"] == ("python /home/ray/streamguard/ray_jobs/train.py --preset devign-gnn "
                                         "--config /etc/streamguard/run.yaml")
    # The ConfigMap holds exactly the config the run trains with: preset, values, overrides.
    expected = cfgmod.load("devign-gnn", ["train.epochs=2", "run.name=devign-gnn-spot",
                                          "run.storage_path=s3://my-streamguard-bucket/runs", "storage.region=us-east-1",
                                          "train.device=cuda", "ray.num_workers=2", "ray.gpus_per_worker=1",
                                          "ray.cpus_per_worker=2", "ray.max_failures=3",
                                          "data.source=prepared:s3://my-streamguard-bucket/prepared/devign",
                                          "data.valid_source=null"])
    assert cfgmod.Config.from_dict(yaml.safe_load(cm["data"]["run.yaml"])) == expected


def test_creates_the_configmap_and_a_schema_valid_rayjob(api):
    done = submit("--preset", "quickstart", "-f", SPOT, "run.name=QuickStart_GPU.1", kubeconfig=api.kubeconfig_path)
    assert done.returncode == 0, done.stderr
    job = api.get("rayjobs", "ml", "quickstart-gpu-1")  # a DNS-1035 name made from the run name
    assert job is not None, api.objects.keys()
    assert "created RayJob quickstart-gpu-1 in namespace ml" in done.stdout
    assert kube.crd_errors(job) == [] and kube.kuberay_rules(job) == []
    cm = api.get("configmaps", "ml", "quickstart-gpu-1-config")
    assert cfgmod.Config.from_dict(yaml.safe_load(cm["data"]["run.yaml"])).run.name == "QuickStart_GPU.1"
    # Deleting the job deletes its config.
    assert cm["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]
    assert ("POST", "/apis/ray.io/v1/namespaces/ml/rayjobs") in api.requests


def test_already_exists_suggests_a_new_name_or_replace(api):
    assert submit("--preset", "quickstart", kubeconfig=api.kubeconfig_path).returncode == 0
    first_uid = api.get("rayjobs", "ml", "quickstart")["metadata"]["uid"]
    done = submit("--preset", "quickstart", "train.epochs=1", kubeconfig=api.kubeconfig_path)
    assert done.returncode == 2
    assert "already exists" in done.stderr and "run.name=" in done.stderr and "--replace" in done.stderr
    assert api.get("rayjobs", "ml", "quickstart")["metadata"]["uid"] == first_uid  # untouched

    done = submit("--preset", "quickstart", "train.epochs=1", "--replace", kubeconfig=api.kubeconfig_path)
    assert done.returncode == 0, done.stderr
    assert api.get("rayjobs", "ml", "quickstart")["metadata"]["uid"] != first_uid
    run_yaml = yaml.safe_load(api.get("configmaps", "ml", "quickstart-config")["data"]["run.yaml"])
    assert run_yaml["train"]["epochs"] == 1


def test_invalid_rayjob_shows_the_field(api, tmp_path):
    # Passes the chart's values schema, but not the CRD's int32 format: the server answers 422.
    values = tmp_path / "values.yaml"
    values.write_text("workerGroups:\n  cpu:\n    maxReplicas: 3000000000\n")
    done = submit("--preset", "quickstart", "-f", str(values), kubeconfig=api.kubeconfig_path)
    assert done.returncode == 2, done.stdout
    assert "rejected RayJob quickstart" in done.stderr
    assert "spec.rayClusterSpec.workerGroupSpecs[0].maxReplicas" in done.stderr
    assert api.get("configmaps", "ml", "quickstart-config") is None  # cleaned up


def test_missing_crd_says_to_install_kuberay(tmp_path):
    kube.need_crds()
    with FakeKubeAPI(crds_installed=False) as server:
        server.add("serviceaccounts", "ml", {"kind": "ServiceAccount", "metadata": {"name": "streamguard"}})
        (tmp_path / "kc").write_text(server.kubeconfig(namespace="ml"))
        done = submit("--preset", "quickstart", kubeconfig=str(tmp_path / "kc"))
    assert done.returncode == 2
    assert "install the KubeRay operator" in done.stderr and "kuberay-operator" in done.stderr


def test_missing_namespace_and_service_account(api):
    done = submit("--preset", "quickstart", "-n", "nope", "--release", "nope", kubeconfig=api.kubeconfig_path)
    assert done.returncode == 2 and "ServiceAccount 'nope-streamguard'" in done.stderr
    api.namespaces.add("fresh")
    done = submit("--preset", "quickstart", "-n", "fresh", kubeconfig=api.kubeconfig_path)
    assert done.returncode == 2 and "install the chart there first" in done.stderr


def test_missing_kubeconfig_says_how_to_get_one(tmp_path):
    done = submit("--preset", "quickstart", kubeconfig=str(tmp_path / "absent"))
    assert done.returncode == 2
    assert "no Kubernetes credentials" in done.stderr and "update-kubeconfig" in done.stderr
    assert "--dry-run" in done.stderr


def test_bad_override_fails_before_any_request(api):
    done = submit("--preset", "quickstart", "train.epochz=3", kubeconfig=api.kubeconfig_path)
    assert done.returncode == 2 and "train.epochz" in done.stderr
    assert api.requests == []


def _play_job(api: FakeKubeAPI, name: str, outcome: str) -> None:
    """What KubeRay and the submitter pod do, in order, once the RayJob exists. Each state is held
    until the watcher has read it (a GET of the RayJob after the change), so a slow machine cannot
    make the test skip one."""
    path = f"/apis/ray.io/v1/namespaces/ml/rayjobs/{name}"

    def seen_after(change) -> None:
        before = api.requests.count(("GET", path))
        change()
        deadline = time.time() + 60
        while api.requests.count(("GET", path)) <= before:
            assert time.time() < deadline, "submit --watch stopped polling"
            time.sleep(0.05)

    deadline = time.time() + 60
    while api.get("rayjobs", "ml", name) is None:
        assert time.time() < deadline
        time.sleep(0.05)
    seen_after(lambda: api.set_status("ml", name, jobDeploymentStatus="Initializing", rayClusterName=f"{name}-abcde"))
    api.add("pods", "ml", {"apiVersion": "v1", "kind": "Pod",
                           "metadata": {"name": f"{name}-xyz12", "labels": {"job-name": name}}})
    api.pod_logs[("ml", f"{name}-xyz12")] = ["epoch 1/1 train loss 0.52", "Done: test F1 0.912"]
    seen_after(lambda: api.set_status("ml", name, jobDeploymentStatus="Running", jobStatus="RUNNING"))
    final = "Complete" if outcome == "SUCCEEDED" else "Failed"
    api.set_status("ml", name, jobDeploymentStatus=final, jobStatus=outcome)


@pytest.mark.parametrize("outcome, code", [("SUCCEEDED", 0), ("FAILED", 1)])
def test_watch_follows_status_and_streams_logs(api, outcome, code):
    player = threading.Thread(target=_play_job, args=(api, "quickstart", outcome), daemon=True)
    player.start()
    done = submit("--preset", "quickstart", "--watch", kubeconfig=api.kubeconfig_path)
    player.join(5)
    assert done.returncode == code, done.stderr
    lines = done.stdout
    for state in ("Initializing", "Running (job RUNNING)", f"job {outcome}"):
        assert state in lines
    assert "  | Done: test F1 0.912" in lines
    assert lines.index("Initializing") < lines.index("Running (job RUNNING)")
    assert ("succeeded" if code == 0 else "failed") in lines.splitlines()[-1]


def test_help_explains_the_command():
    done = subprocess.run([sys.executable, "-m", "streamguard", "submit", "--help"], capture_output=True, text=True,
                          env={**cli_env(), "COLUMNS": "200"}, timeout=60, check=False)
    assert done.returncode == 0
    for text in ("--preset", "--values", "--watch", "--replace", "--dry-run", "--namespace", "KubeRay",
                 "section.key=value"):
        assert text in done.stdout, text


def test_no_api_server_names_the_host(tmp_path):
    with FakeKubeAPI() as server:
        kubeconfig = server.kubeconfig()
    (tmp_path / "kc").write_text(kubeconfig)  # the server is gone now
    done = submit("--preset", "quickstart", "-n", "default", kubeconfig=str(tmp_path / "kc"), timeout=180)
    assert done.returncode == 2
    assert "cannot reach the Kubernetes API at http://127.0.0.1:" in done.stderr


assert os.sep == "/"  # the subprocess tests assume a POSIX machine
