"""The Helm chart, rendered by the real Helm engine with the default values and every example,
validated against Kubernetes 1.31 and the KubeRay 1.7 CRDs, with its key facts asserted."""

from __future__ import annotations

import importlib.metadata
import json
import re
import tomllib

import pytest
import yaml

from streamguard import config as cfgmod
from streamguard.deploy import rayjob as rj
from tests.k8s import kube

SCENARIOS = {"default": {}, **{p.stem: kube.example_values(p) for p in kube.EXAMPLES}}
# Every switch on, so that every template renders at least once.
EVERYTHING = {"head": {"podDisruptionBudget": {"enabled": True}},
              "metrics": {"appPort": 9108, "podMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
              "storage": {"uri": "s3://bucket/runs", "endpointUrl": "http://minio.minio:9000", "region": "eu-west-1",
                          "credentials": {"existingSecret": "s3-keys", "sessionTokenKey": "AWS_SESSION_TOKEN"}},
              "imagePullSecrets": ["regcred"], "extraEnv": [{"name": "NCCL_DEBUG", "value": "WARN"}],
              "job": {"enabled": True, "runName": "everything", "runtimeEnv": {"env_vars": {"A": "1"}}},
              "sweep": {"enabled": True, "useCluster": True, "spec": {"search": {"optim.lr": "choice([0.001])"}}}}
SCENARIOS["everything"] = EVERYTHING


@pytest.fixture(scope="module", params=sorted(SCENARIOS))
def rendered(request):
    objects, notes = kube.render(SCENARIOS[request.param])
    return request.param, objects, notes


def test_lint_strict():
    h = kube.helm()
    for name, values in SCENARIOS.items():
        report = h.lint(str(kube.CHART), values, strict=True, kube_version="v1.31.0")
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert not problems and not report["errors"], (name, problems, report["errors"])


def test_every_object_validates(rendered):
    name, objects, _ = rendered
    assert objects, name
    kube.validate_all(objects)  # built-in kinds strict against 1.31; Ray kinds against the CRDs when present


def test_ray_objects_match_the_kuberay_crds(rendered):
    kube.need_crds()
    _, objects, _ = rendered
    ray_objects = [o for o in objects if o["kind"] in kube.CUSTOM_KINDS]
    assert ray_objects
    for obj in ray_objects:
        kube.validate_crd(obj)
        assert kube.kuberay_rules(obj) == []


def test_the_crd_check_can_fail():
    kube.need_crds()
    objects, _ = kube.render({"job": {"enabled": True}})
    job = kube.one(objects, "RayJob")
    job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["replicas"] = "two"
    job["spec"]["submitterPodTemplate"]["spec"]["containers"][0]["imagePullPolice"] = "Always"
    errors = kube.crd_errors(job)
    assert any("workerGroupSpecs.0.replicas" in e for e in errors)
    assert any("imagePullPolice" in e for e in errors)


def test_every_template_renders_somewhere():
    rendered_templates = set()
    h = kube.helm()
    with h.Chart.load(str(kube.CHART)) as chart:
        for values in SCENARIOS.values():
            out = chart.render(values=values, name="sg", namespace="ml")
            rendered_templates |= {p.split("/", 1)[1] for p, text in out.items() if text.strip()}
    templates = {f"templates/{p.name}" for p in (kube.CHART / "templates").iterdir() if not p.name.startswith("_")}
    assert templates - rendered_templates == set()


def test_ray_version_equals_the_pinned_and_installed_ray():
    pyproject = tomllib.loads((kube.REPO / "pyproject.toml").read_text())
    ray_pin = next(d for d in pyproject["project"]["optional-dependencies"]["ray"] if d.startswith("ray["))
    lower, upper = re.search(r">=([\d.]+),<([\d.]+)", ray_pin).groups()
    chart_ray = yaml.safe_load((kube.CHART / "values.yaml").read_text())["rayVersion"]
    as_tuple = lambda v: tuple(int(x) for x in v.split("."))
    assert as_tuple(lower) <= as_tuple(chart_ray) < as_tuple(upper), (chart_ray, ray_pin)
    try:
        assert importlib.metadata.version("ray") == chart_ray
    except importlib.metadata.PackageNotFoundError:
        pass  # the ray extra is not installed: the pin above still holds
    dockerfile = (kube.REPO / "images" / "Dockerfile").read_text()
    assert f"ARG RAY_VERSION={chart_ray}\n" in dockerfile
    for name, values in SCENARIOS.items():
        objects, _ = kube.render(values)
        for obj in objects:
            if obj["kind"] == "RayCluster":
                assert obj["spec"]["rayVersion"] == chart_ray, name
            if obj["kind"] == "RayJob" and "rayClusterSpec" in obj["spec"]:
                assert obj["spec"]["rayClusterSpec"]["rayVersion"] == chart_ray, name


def _clusters(objects):
    for obj in objects:
        if obj["kind"] == "RayCluster":
            yield obj["spec"]
        elif obj["kind"] == "RayJob" and "rayClusterSpec" in obj["spec"]:
            yield obj["spec"]["rayClusterSpec"]


def test_gpu_workers_tolerate_spot_gpu_nodes_and_the_head_has_no_gpu(rendered):
    _, objects, _ = rendered
    for cluster in _clusters(objects):
        head = cluster["headGroupSpec"]
        assert head["rayStartParams"]["num-cpus"] == "0"  # no training task lands on the head
        head_res = head["template"]["spec"]["containers"][0]["resources"]
        assert not any("gpu" in k for part in head_res.values() for k in part)
        for group in cluster["workerGroupSpecs"]:
            pod = group["template"]["spec"]
            limits = pod["containers"][0]["resources"]["limits"]
            if "gpu" in group["groupName"]:
                assert limits["nvidia.com/gpu"] >= 1
                keys = {t["key"] for t in pod["tolerations"]}
                assert "nvidia.com/gpu" in keys
                assert pod["nodeSelector"].get("eks.amazonaws.com/capacityType") == "SPOT"
                assert pod["containers"][0]["image"].endswith("-cuda")
            assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"] or group["replicas"] == 0


def test_spot_notice_reaches_training_in_time(rendered):
    _, objects, _ = rendered
    for cluster in _clusters(objects):
        for group in cluster["workerGroupSpecs"]:
            pod = group["template"]["spec"]
            command = pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
            assert command[:3] == ["python", "-m", "streamguard.deploy.prestop"]
            wait = int(command[command.index("--wait-seconds") + 1])
            assert pod["terminationGracePeriodSeconds"] > wait > 0


def test_entrypoints_run_the_preset_with_the_mounted_config():
    objects, _ = kube.render({"job": {"enabled": True, "preset": "devign-transformer"},
                              "sweep": {"enabled": True, "preset": "devign-hybrid", "overrides": ["train.epochs=4"]}})
    jobs = {o["metadata"]["labels"]["app.kubernetes.io/component"]: o for o in kube.by_kind(objects, "RayJob")}
    assert jobs["train"]["spec"]["entrypoint"] == ("python /home/ray/streamguard/ray_jobs/train.py "
                                                   "--preset devign-transformer --config /etc/streamguard/run.yaml")
    sweep = jobs["sweep"]["spec"]["entrypoint"]
    assert sweep.startswith("python /home/ray/streamguard/ray_jobs/tune.py --preset devign-hybrid "
                            "--sweep /etc/streamguard/sweep.yaml ")
    assert "'train.epochs=4'" in sweep and " --name devign-hybrid-sweep " in sweep
    cm = kube.one(objects, "ConfigMap") if len(kube.by_kind(objects, "ConfigMap")) == 1 else \
        next(c for c in kube.by_kind(objects, "ConfigMap") if c["metadata"]["name"].endswith("-config"))
    assert {"run.yaml", "sweep.yaml"} <= set(cm["data"])
    for job in jobs.values():  # the driver runs on the head: the config must be mounted there
        head = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
        mounts = {m["name"]: m["mountPath"] for m in head["containers"][0]["volumeMounts"]}
        assert mounts["run-config"] == "/etc/streamguard"
        assert {"name": "run-config", "configMap": {"name": cm["metadata"]["name"]}} in head["volumes"]


def _flatten(tree: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in tree.items():
        if isinstance(value, dict):
            out += _flatten(value, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}={'null' if value is None else json.dumps(value) if isinstance(value, list) else value}")
    return out


@pytest.mark.parametrize("scenario", ["cpu-smoke", "gpu-spot", "overrides"])
def test_configmap_is_the_preset_with_its_overrides(scenario, tmp_path):
    if scenario == "overrides":
        values = {"job": {"enabled": True, "preset": "devign-gnn", "runName": "gnn-lr"},
                  "runConfig": {"config": {"train": {"epochs": 3, "batch_size": 32}, "optim": {"lr": 5e-4},
                                           "model": {"gnn": {"hidden": 64}}}},
                  "storage": {"uri": "s3://my-bucket/p", "endpointUrl": "http://minio:9000"}}
    else:
        values = SCENARIOS[scenario]
    objects, _ = kube.render(values)
    preset = values["job"]["preset"]
    # What a user means: the preset, the run config's keys as key=value overrides, and the
    # chart-level settings (run name, storage) as the same overrides would set them.
    overrides = _flatten(values.get("runConfig", {}).get("config", {}))
    if values["job"].get("runName"):
        overrides.append(f"run.name={values['job']['runName']}")
    storage = values.get("storage", {})
    overrides += [f"{k}={storage[v]}" for k, v in (("run.storage_path", "uri"), ("storage.endpoint_url", "endpointUrl"),
                                                   ("storage.region", "region")) if storage.get(v)]
    expected = cfgmod.load(preset, overrides)
    cm = next(c for c in kube.by_kind(objects, "ConfigMap") if c["metadata"]["name"].endswith("-config"))
    run_yaml = cm["data"]["run.yaml"]
    # Exactly the overrides, nothing resolved by the chart ...
    assert sorted(_flatten(yaml.safe_load(run_yaml))) == sorted(overrides)
    # ... and, read the way ray_jobs/train.py reads it, the same config as the laptop run.
    path = tmp_path / "run.yaml"
    path.write_text(run_yaml)
    assert cfgmod.load(preset, config_file=path) == expected


def test_s3_secret_is_referenced_never_inlined():
    values = SCENARIOS["sweep"]
    objects, _ = kube.render(values)
    secret = values["storage"]["credentials"]["existingSecret"]
    assert not kube.by_kind(objects, "Secret")
    seen = 0
    for obj in kube.by_kind(objects, "RayJob"):
        for where, template in kube.pod_templates(obj):
            for container in template["spec"]["containers"]:
                for env in container.get("env", []):
                    if env["name"].startswith("AWS_") and any(s in env["name"] for s in ("KEY", "SECRET", "TOKEN")):
                        assert "value" not in env, (where, env)
                        assert env["valueFrom"]["secretKeyRef"]["name"] == secret
                        seen += 1
    assert seen >= 2
    assert not re.search(r"AKIA[0-9A-Z]{16}", yaml.safe_dump_all(objects))  # no access key id anywhere


def test_irsa_needs_no_secret():
    objects, _ = kube.render(SCENARIOS["gpu-spot"])
    sa = kube.one(objects, "ServiceAccount")
    assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
    job = kube.one(objects, "RayJob")
    for _, template in kube.pod_templates(job):
        env_names = {e["name"] for c in template["spec"]["containers"] for e in c.get("env", [])}
        assert "AWS_ACCESS_KEY_ID" not in env_names and "AWS_SECRET_ACCESS_KEY" not in env_names
        if template["spec"].get("serviceAccountName"):
            assert template["spec"]["serviceAccountName"] == sa["metadata"]["name"]


def test_pods_run_as_non_root_with_least_privilege(rendered):
    _, objects, _ = rendered
    for obj in objects:
        if obj["kind"] not in kube.CUSTOM_KINDS:
            continue
        for where, template in kube.pod_templates(obj):
            spec = template["spec"]
            assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
            assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
            for c in spec["containers"]:
                sc = c["securityContext"]
                assert sc["allowPrivilegeEscalation"] is False and sc.get("privileged") is False, where
                assert sc["capabilities"]["drop"] == ["ALL"], where
                assert c["resources"]["limits"] and c["resources"]["requests"], where
            if where != "head":  # only the head's autoscaler sidecar talks to the API
                assert spec["automountServiceAccountToken"] is False, where


def test_rbac_is_least_privilege():
    objects, _ = kube.render(EVERYTHING)
    assert not kube.by_kind(objects, "ClusterRole") and not kube.by_kind(objects, "ClusterRoleBinding")
    roles = {r["metadata"]["name"]: r for r in kube.by_kind(objects, "Role")}
    autoscaler = roles["sg-streamguard-autoscaler"]["rules"]
    assert autoscaler == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "patch"]},
                          {"apiGroups": [""], "resources": ["pods/resize"], "verbs": ["patch"]},
                          {"apiGroups": ["ray.io"], "resources": ["rayclusters"], "verbs": ["get", "patch"]}]
    for role in roles.values():
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
            assert "secrets" not in rule["resources"]
    binding = kube.one(objects, "RoleBinding")
    assert binding["roleRef"]["name"] == "sg-streamguard-autoscaler"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "sg-streamguard", "namespace": "ml"}]
    # Without the autoscaler nobody needs the Kubernetes API.
    objects, _ = kube.render({"cluster": {"autoscaling": False}, "rbac": {"submitterRole": False}})
    assert not kube.by_kind(objects, "Role") and not kube.by_kind(objects, "RoleBinding")


def test_metrics_podmonitor_and_grafana_dashboard():
    objects, _ = kube.render(EVERYTHING)
    monitor = kube.one(objects, "PodMonitor")
    assert {"key": "ray.io/node-type", "operator": "In", "values": ["head", "worker"]} in \
        monitor["spec"]["selector"]["matchExpressions"]
    ports = [e["port"] for e in monitor["spec"]["podMetricsEndpoints"]]
    assert ports == ["metrics", "sg-metrics"]
    for cluster in _clusters(objects):  # the named ports the PodMonitor scrapes exist on every Ray pod
        groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
        for group in groups:
            named = {p["name"]: p["containerPort"] for p in group["template"]["spec"]["containers"][0]["ports"]}
            assert named["metrics"] == int(group["rayStartParams"]["metrics-export-port"]) == 8080
            assert named["sg-metrics"] == 9108
    dashboard = next(c for c in kube.by_kind(objects, "ConfigMap") if c["metadata"]["name"].endswith("-dashboard"))
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads((kube.CHART / "files" / "streamguard-dashboard.json").read_text())
    assert json.loads(dashboard["data"]["streamguard-dashboard.json"]) == shipped
    rule = kube.one(objects, "PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load((kube.CHART / "files" / "streamguard-alerts.yaml").read_text())["groups"]
    pdb = kube.one(objects, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 0 and pdb["spec"]["selector"]["matchLabels"]["ray.io/node-type"] == "head"


@pytest.mark.parametrize("name", ["grafana/streamguard-dashboard.json", "prometheus/alerts.yaml"])
def test_chart_copies_of_monitoring_files_are_current(name):
    canonical = kube.REPO / "monitoring" / name
    if not canonical.exists():
        pytest.skip(f"{canonical} does not exist yet")
    copy = kube.CHART / "files" / {"grafana/streamguard-dashboard.json": "streamguard-dashboard.json",
                                   "prometheus/alerts.yaml": "streamguard-alerts.yaml"}[name]
    assert copy.read_bytes() == canonical.read_bytes(), "run `make sync-monitoring`"


def test_names_fit_kubernetes_and_kuberay_limits():
    long_release = "a-very-long-release-name-for-a-team-that-likes-descriptive-names"[:53]
    objects, _ = kube.render({"job": {"enabled": True}, "sweep": {"enabled": True}}, release=long_release)
    for obj in objects:
        assert len(obj["metadata"]["name"]) <= 63, obj["metadata"]["name"]
        if obj["kind"] in kube.CUSTOM_KINDS:
            assert kube.kuberay_rules(obj) == [], obj["metadata"]["name"]
    h = kube.helm()
    with pytest.raises(h.HelmError, match="start with a letter|starting with a letter"):
        kube.render({}, release="1st-try")


@pytest.mark.parametrize("bad, where", [
    ({"job": {"submissionMode": "InteractiveModeX"}}, "/job/submissionMode"),
    ({"workerGroups": {"gpu-spot": {"maxReplicas": -1}}}, "/workerGroups/gpu-spot/maxReplicas"),
    ({"head": {"resources": {"limits": {"nvidia.com/gpu": 1}}}}, "nvidia.com/gpu"),
    ({"workerGroups": {"cpu": {"rayStartParams": {"num-cpus": 4}}}}, "/workerGroups/cpu/rayStartParams/num-cpus"),
    ({"storage": {"uri": "bucket/prefix"}}, "/storage/uri"),
    ({"imagee": {"tag": "x"}}, "imagee"),
    ({"sweep": {"overrides": ["optim.lr=1e-3'; rm -rf /"]}}, "/sweep/overrides/0"),
])
def test_values_schema_rejects_bad_values(bad, where):
    h = kube.helm()
    with pytest.raises(h.HelmValuesError) as err:
        kube.render(bad)
    assert where in str(err.value)
    with pytest.raises(cfgmod.ConfigError, match="bad chart value"):  # submit applies the same schema
        rj.validate_values(rj._helm_merge(rj.default_values(), bad))


def test_template_guards():
    h = kube.helm()
    with pytest.raises(h.HelmError, match="shutdownAfterJobFinishes"):
        kube.render({"job": {"enabled": True, "shutdownAfterJobFinishes": False}})
    with pytest.raises(h.HelmError, match="cluster.enabled=true"):
        kube.render({"cluster": {"enabled": False}, "job": {"enabled": True, "useCluster": True}})


def test_notes_say_how_to_reach_the_dashboard_and_submit(rendered):
    name, _, notes = rendered
    if SCENARIOS[name].get("cluster", {}).get("enabled", True):
        assert "port-forward svc/sg-streamguard-head-svc 8265:8265" in notes
        assert "ray job submit --address http://127.0.0.1:8265" in notes
    assert "streamguard submit --preset" in notes


# ------------------------------------------------------------------ submit == chart


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_submit_builds_the_rayjob_the_chart_renders(scenario):
    values = rj._helm_merge(SCENARIOS[scenario], {"job": {"enabled": True, "useCluster": False}})
    objects, _ = kube.render(values, release="sg")
    chart_job = next(o for o in kube.by_kind(objects, "RayJob") if o["metadata"]["name"].endswith("-train"))
    merged = rj._helm_merge(rj.default_values(), values)
    rj.validate_values(merged)
    preset = merged["job"]["preset"]
    spec = rj.rayjob_spec("sg", merged, merged["job"], rj.train_entrypoint(merged, preset), "sg-streamguard-config")
    assert spec == chart_job["spec"]


def test_packaged_chart_values_are_current():
    import runpy

    sync = runpy.run_path(str(kube.REPO / "scripts" / "sync_chart_values.py"))
    packaged = (kube.REPO / "src" / "streamguard" / "deploy" / "chart_values.py").read_text()
    assert packaged == sync["current_text"](), "run `make sync-chart-values`"
    h = kube.helm()
    with h.Chart.load(str(kube.CHART)) as chart:
        helm_defaults = chart.values
    assert rj.default_values() == yaml.safe_load((kube.CHART / "values.yaml").read_text())
    assert set(helm_defaults) == set(rj.default_values())


def test_values_are_documented():
    """Every value in values.yaml is documented with a `# --` comment (helm-docs), on itself or on
    the mapping it belongs to, as in KubeRay's charts."""
    lines = (kube.CHART / "values.yaml").read_text().splitlines()
    undocumented, stack = [], []  # stack of (indent, documented) for the enclosing keys
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)([A-Za-z][\w./-]*):(.*)$", line)
        if not m:
            continue
        indent = len(m.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        j = i - 1
        while j >= 0 and lines[j].strip().startswith("#") and not lines[j].strip().startswith("# --"):
            j -= 1
        documented = j >= 0 and lines[j].strip().startswith("# --") or any(d for _, d in stack)
        nxt = next((ln for ln in lines[i + 1:] if ln.strip() and not ln.strip().startswith("#")), "")
        has_children = not m.group(3).strip() and len(nxt) - len(nxt.lstrip()) > indent
        if not has_children and not documented:
            undocumented.append(f"{i + 1}: {m.group(2)}")
        stack.append((indent, documented))
    assert not undocumented, undocumented


def test_sweep_example_is_a_valid_sweep_for_its_preset(tmp_path):
    """The chart's sweep.yaml is read by `ray_jobs/tune.py --sweep`: it must parse as a sweep
    and every searched key and bound must make a valid config of the preset."""
    import yaml as _yaml

    from streamguard import config as cfgmod
    from streamguard.sweep import load_sweep, validate

    values = _yaml.safe_load((kube.CHART / "examples" / "sweep.yaml").read_text())
    objects, _ = kube.render(values)
    cm = next(c for c in kube.by_kind(objects, "ConfigMap") if "sweep.yaml" in c.get("data", {}))
    (tmp_path / "sweep.yaml").write_text(cm["data"]["sweep.yaml"])
    spec = load_sweep(tmp_path / "sweep.yaml")
    assert spec.name == values["sweep"]["runName"] and spec.scheduler.type == "asha"
    validate(cfgmod.load(values["sweep"]["preset"], values["sweep"]["overrides"]), spec)


def test_head_sets_fast_node_death_detection():
    objects, _ = kube.render({"head": {"nodeHealthCheck": {"periodMs": 500, "failureThreshold": 4}}})
    head = kube.one(objects, "RayCluster")["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in head["env"]}
    assert env["RAY_health_check_period_ms"] == "500" and env["RAY_health_check_failure_threshold"] == "4"
