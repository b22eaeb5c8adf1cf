"""RayJob and ConfigMap bodies for `streamguard submit`, built from a Config and the chart's values.

This mirrors helm/streamguard/templates (`_helpers.tpl`: names, image, env, the RayCluster spec,
the RayJob) line for line, so a job submitted from a laptop runs exactly like one installed by the
chart with the same values; tests/k8s renders both and compares them. Plain dicts in, plain dicts
out: no kubernetes client, no ray.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import yaml

from streamguard.config import Config
from streamguard.errors import ConfigError

CHART_NAME = "streamguard"
RUN_CONFIG_KEY = "run.yaml"
MAX_RAYCLUSTER_NAME = 53  # KubeRay appends `-head-svc` (63 - 10)
MAX_RAYJOB_NAME = 47  # KubeRay appends a 6-character suffix for the job's cluster
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


# ------------------------------------------------------------------------------- values


def default_values() -> dict[str, Any]:
    """The chart's values.yaml (embedded copy, kept equal by a test)."""
    from streamguard.deploy.chart_values import VALUES_YAML

    return yaml.safe_load(VALUES_YAML)


def load_values(files: list[str | Path] = ()) -> dict[str, Any]:
    """Chart defaults with each `--values` file merged over them, as `helm -f` does."""
    values = default_values()
    for file in files:
        try:
            extra = yaml.safe_load(Path(file).read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read values file {str(file)!r}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"values file {str(file)!r} is not valid YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(extra, dict):
            raise ConfigError(f"values file {str(file)!r} must be a mapping, like helm/streamguard/values.yaml")
        values = _helm_merge(values, extra)
    validate_values(values)
    return values


def validate_values(values: dict[str, Any]) -> None:
    """The chart's values.schema.json, as `helm install` applies it."""
    import json

    import jsonschema

    from streamguard.deploy.chart_values import VALUES_SCHEMA_JSON

    validator = jsonschema.Draft7Validator(json.loads(VALUES_SCHEMA_JSON))
    error = jsonschema.exceptions.best_match(validator.iter_errors(values))
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "values"
        raise ConfigError(f"bad chart value {where}: {error.message} (see helm/streamguard/values.yaml)")


def _helm_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Helm's coalescing: maps merge, anything else replaces; a null deletes a default (and is
    kept where there was no default)."""
    merged = dict(base)
    for key, value in extra.items():
        if value is None and key in merged:
            del merged[key]
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _helm_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


# -------------------------------------------------------------------------------- names


def _trunc(name: str, n: int) -> str:
    """Helm's `trunc n | trimSuffix "-"`."""
    name = name[:n]
    return name.removesuffix("-")


def fullname(release: str, values: dict[str, Any]) -> str:
    if values.get("fullnameOverride"):
        return _trunc(values["fullnameOverride"], 63)
    name = values.get("nameOverride") or CHART_NAME
    return _trunc(release if name in release else f"{release}-{name}", 63)


def service_account_name(release: str, values: dict[str, Any]) -> str | None:
    """None: no serviceAccountName in the pod (the chart omits it in that case too)."""
    sa = values["serviceAccount"]
    if sa.get("create"):
        return sa.get("name") or fullname(release, values)
    return sa.get("name") or None


def rayjob_name(run_name: str) -> str:
    """A RayJob name for a run: a DNS-1035 label of at most 47 characters (KubeRay's limits)."""
    name = re.sub(r"[^a-z0-9-]+", "-", run_name.lower()).strip("-")
    if not name[:1].isalpha():
        name = f"sg-{name}"
    name = name[:MAX_RAYJOB_NAME].rstrip("-")
    if not _DNS1035.match(name):
        raise ConfigError(f"cannot make a RayJob name from run.name={run_name!r}; pick a name with letters and digits")
    return name


# ------------------------------------------------------------------------------- pieces


def image_ref(values: dict[str, Any], override: dict[str, Any] | None = None) -> str:
    img, o = values["image"], override or {}
    repo = o.get("repository") or img["repository"]
    tag, digest = img.get("tag"), img.get("digest")
    if "tag" in o or "digest" in o:  # a group's own pair: a pinned CPU digest never leaks into it
        tag, digest = o.get("tag") or "", o.get("digest") or ""
    return f"{repo}@{digest}" if digest else f"{repo}:{tag}"


def container_env(values: dict[str, Any]) -> list[dict[str, Any]]:
    s = values["storage"]
    env: list[dict[str, Any]] = []
    if s.get("region"):
        env += [{"name": "AWS_REGION", "value": s["region"]}, {"name": "AWS_DEFAULT_REGION", "value": s["region"]}]
    if s.get("endpointUrl"):
        env.append({"name": "AWS_ENDPOINT_URL", "value": s["endpointUrl"]})
    cred = s.get("credentials") or {}
    if cred.get("existingSecret"):
        keys = [("AWS_ACCESS_KEY_ID", cred["accessKeyIdKey"]), ("AWS_SECRET_ACCESS_KEY", cred["secretAccessKeyKey"])]
        if cred.get("sessionTokenKey"):
            keys.append(("AWS_SESSION_TOKEN", cred["sessionTokenKey"]))
        # Referenced, never copied: the values stay in the Secret.
        env += [{"name": n, "valueFrom": {"secretKeyRef": {"name": cred["existingSecret"], "key": k}}} for n, k in keys]
    return env + list(values.get("extraEnv") or [])


def _pod_labels(release: str, values: dict[str, Any], component: str, extra: dict | None = None) -> dict[str, str]:
    return {"app.kubernetes.io/name": _trunc(values.get("nameOverride") or CHART_NAME, 63),
            "app.kubernetes.io/instance": release, "app.kubernetes.io/component": component, **(extra or {})}


def _metrics_ports(values: dict[str, Any]) -> list[dict[str, Any]]:
    m = values["metrics"]
    ports = [{"name": "metrics", "containerPort": int(m["exportPort"]), "protocol": "TCP"}]
    if m.get("appPort") is not None:
        ports.append({"name": "sg-metrics", "containerPort": int(m["appPort"]), "protocol": "TCP"})
    return ports


def _volumes(values: dict[str, Any], config_map: str) -> tuple[list[dict], list[dict]]:
    volumes: list[dict[str, Any]] = [{"name": "run-config", "configMap": {"name": config_map}}]
    mounts: list[dict[str, Any]] = [{"name": "run-config", "mountPath": values["runConfig"]["mountPath"], "readOnly": True}]
    if values.get("sharedMemory"):
        volumes.append({"name": "shared-mem", "emptyDir": {"medium": "Memory"}})
        mounts.append({"name": "shared-mem", "mountPath": "/dev/shm"})
    return volumes, mounts


def _placement(spec: dict[str, Any], group: dict[str, Any]) -> None:
    for key in ("nodeSelector", "tolerations", "affinity"):
        if group.get(key):
            spec[key] = copy.deepcopy(group[key])


def _pull_secrets(values: dict[str, Any]) -> dict[str, Any]:
    secrets = values.get("imagePullSecrets") or []
    return {"imagePullSecrets": [{"name": s} for s in secrets]} if secrets else {}


def ray_cluster_spec(release: str, values: dict[str, Any], config_map: str) -> dict[str, Any]:
    """The `rayClusterSpec` (`streamguard.rayClusterSpec` in the chart)."""
    v = values
    sa = service_account_name(release, v)
    env = container_env(v)
    volumes, mounts = _volumes(v, config_map)
    export_port = str(int(v["metrics"]["exportPort"]))
    autoscaling = bool(v["cluster"]["autoscaling"])
    spec: dict[str, Any] = {"rayVersion": str(v["rayVersion"]), "enableInTreeAutoscaling": autoscaling}
    if autoscaling:
        a = v["cluster"]["autoscaler"]
        spec["autoscalerOptions"] = {"upscalingMode": a["upscalingMode"], "idleTimeoutSeconds": int(a["idleTimeoutSeconds"]),
                                     "imagePullPolicy": v["image"]["pullPolicy"],
                                     "resources": copy.deepcopy(a["resources"]),
                                     "securityContext": copy.deepcopy(v["securityContext"])}

    head = v["head"]
    head_pod: dict[str, Any] = {}
    if sa:
        head_pod["serviceAccountName"] = sa
    head_pod["automountServiceAccountToken"] = autoscaling  # only the autoscaler talks to the API
    head_pod.update(_pull_secrets(v))
    head_pod["securityContext"] = copy.deepcopy(v["podSecurityContext"])
    _placement(head_pod, head)
    head_container: dict[str, Any] = {
        "name": "ray-head", "image": image_ref(v), "imagePullPolicy": v["image"]["pullPolicy"],
        "ports": [{"name": "gcs-server", "containerPort": 6379, "protocol": "TCP"},
                  {"name": "dashboard", "containerPort": 8265, "protocol": "TCP"},
                  {"name": "client", "containerPort": 10001, "protocol": "TCP"}, *_metrics_ports(v)]}
    health = head["nodeHealthCheck"]
    head_container["env"] = [*env, {"name": "RAY_health_check_period_ms", "value": str(int(health["periodMs"]))},
                             {"name": "RAY_health_check_failure_threshold",
                              "value": str(int(health["failureThreshold"]))}]
    head_container.update({"resources": copy.deepcopy(head["resources"]),
                           "securityContext": copy.deepcopy(v["securityContext"]), "volumeMounts": mounts})
    head_pod["containers"] = [head_container]
    head_pod["volumes"] = volumes
    head_meta: dict[str, Any] = {"labels": _pod_labels(release, v, "ray-head", head.get("labels"))}
    if head.get("annotations"):
        head_meta["annotations"] = dict(head["annotations"])
    spec["headGroupSpec"] = {
        "serviceType": "ClusterIP",
        "rayStartParams": {"dashboard-host": "0.0.0.0", "metrics-export-port": export_port, **(head.get("rayStartParams") or {})},
        "template": {"metadata": head_meta, "spec": head_pod}}

    groups = []
    wait = str(int(v["spotNotice"]["checkpointWaitSeconds"]))
    for name in sorted(v.get("workerGroups") or {}):  # Helm ranges over map keys in sorted order
        g = v["workerGroups"][name]
        if not g.get("enabled"):
            continue
        pod: dict[str, Any] = {}
        if sa:
            pod["serviceAccountName"] = sa
        pod["automountServiceAccountToken"] = False
        pod["terminationGracePeriodSeconds"] = int(v["spotNotice"]["terminationGracePeriodSeconds"])
        pod.update(_pull_secrets(v))
        pod["securityContext"] = copy.deepcopy(v["podSecurityContext"])
        _placement(pod, g)
        container: dict[str, Any] = {"name": "ray-worker", "image": image_ref(v, g.get("image")),
                                     "imagePullPolicy": v["image"]["pullPolicy"], "ports": _metrics_ports(v)}
        if env:
            container["env"] = env
        container.update({
            # Spot notice / drain / eviction: drain the Ray node, SIGTERM the training workers and
            # wait for their checkpoint (streamguard/deploy/prestop.py).
            "lifecycle": {"preStop": {"exec": {"command": ["python", "-m", "streamguard.deploy.prestop", "--wait-seconds", wait]}}},
            "resources": copy.deepcopy(g["resources"]), "securityContext": copy.deepcopy(v["securityContext"]),
            "volumeMounts": mounts})
        pod["containers"] = [container]
        pod["volumes"] = volumes
        meta: dict[str, Any] = {"labels": _pod_labels(release, v, "ray-worker", g.get("labels"))}
        if g.get("annotations"):
            meta["annotations"] = dict(g["annotations"])
        groups.append({"groupName": name, "replicas": int(g["replicas"]), "minReplicas": int(g["minReplicas"]),
                       "maxReplicas": int(g["maxReplicas"]),
                       "rayStartParams": {"metrics-export-port": export_port, **(g.get("rayStartParams") or {})},
                       "template": {"metadata": meta, "spec": pod}})
    spec["workerGroupSpecs"] = groups
    return copy.deepcopy(spec)  # no shared sub-objects in the YAML we print


def train_entrypoint(values: dict[str, Any], preset: str) -> str:
    return (f"python {values['appDir']}/ray_jobs/train.py --preset {preset} "
            f"--config {values['runConfig']['mountPath']}/{RUN_CONFIG_KEY}")


def rayjob_spec(release: str, values: dict[str, Any], job: dict[str, Any], entrypoint: str,
                config_map: str, cluster_name: str | None = None) -> dict[str, Any]:
    """The RayJob `spec` (`streamguard.rayJob` in the chart); `job` is the chart's `job` block."""
    if not job.get("useCluster") and not job.get("shutdownAfterJobFinishes") and int(job.get("ttlSecondsAfterFinished") or 0) > 0:
        raise ConfigError("job.ttlSecondsAfterFinished > 0 needs job.shutdownAfterJobFinishes=true (KubeRay rejects it otherwise)")
    spec: dict[str, Any] = {"entrypoint": entrypoint, "submissionMode": job["submissionMode"],
                            "backoffLimit": int(job["backoffLimit"])}
    if job.get("activeDeadlineSeconds") is not None:
        spec["activeDeadlineSeconds"] = int(job["activeDeadlineSeconds"])
    if job.get("runtimeEnv"):
        # JSON is YAML; Helm's toJson sorts keys and has no spaces, as below.
        spec["runtimeEnvYAML"] = json.dumps(job["runtimeEnv"], sort_keys=True, separators=(",", ":"))
    if job.get("useCluster"):
        if not cluster_name:
            raise ConfigError("job.useCluster needs a running RayCluster: `streamguard submit` creates its own cluster")
        spec["clusterSelector"] = {"ray.io/cluster": cluster_name}
    else:
        spec["shutdownAfterJobFinishes"] = bool(job["shutdownAfterJobFinishes"])
        spec["ttlSecondsAfterFinished"] = int(job["ttlSecondsAfterFinished"])
        spec["rayClusterSpec"] = ray_cluster_spec(release, values, config_map)
    if job["submissionMode"] == "K8sJobMode":
        spec["submitterPodTemplate"] = {
            "metadata": {"labels": _pod_labels(release, values, "ray-job-submitter")},
            "spec": {"restartPolicy": "Never", "automountServiceAccountToken": False, **_pull_secrets(values),
                     "securityContext": copy.deepcopy(values["podSecurityContext"]),
                     "containers": [{"name": "ray-job-submitter", "image": image_ref(values),
                                     "imagePullPolicy": values["image"]["pullPolicy"],
                                     "resources": copy.deepcopy(values["submitter"]["resources"]),
                                     "securityContext": copy.deepcopy(values["securityContext"])}]}}
    return spec


# ---------------------------------------------------------------------------- the config


def values_config_overrides(values: dict[str, Any]) -> dict[str, Any]:
    """What the chart writes into run.yaml (`streamguard.runConfig`): runConfig.config with the
    chart-level settings (job.runName, storage.*, metrics.appPort) over it."""
    derived: dict[str, Any] = {}
    if values["job"].get("runName"):
        derived.setdefault("run", {})["name"] = values["job"]["runName"]
    s = values["storage"]
    if s.get("uri"):
        derived.setdefault("run", {})["storage_path"] = s["uri"]
    if s.get("endpointUrl"):
        derived.setdefault("storage", {})["endpoint_url"] = s["endpointUrl"]
    if s.get("region"):
        derived.setdefault("storage", {})["region"] = s["region"]
    if values["metrics"].get("appPort") is not None:
        derived["metrics"] = {"prometheus_port": int(values["metrics"]["appPort"])}
    return _deep_merge(copy.deepcopy(values["runConfig"].get("config") or {}), derived)


def build(cfg: Config, preset: str, values: dict[str, Any], *, namespace: str, release: str = "streamguard",
          name: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(RayJob, ConfigMap) that train `cfg` on a cluster of its own. The ConfigMap holds the
    resolved config, so the job trains exactly what was validated here."""
    job_name = name or rayjob_name(cfg.run.name)
    config_map = f"{job_name}-config"
    labels = {"app.kubernetes.io/name": _trunc(values.get("nameOverride") or CHART_NAME, 63),
              "app.kubernetes.io/instance": release, "app.kubernetes.io/managed-by": "streamguard-submit",
              "app.kubernetes.io/component": "train", "streamguard/preset": preset, "streamguard/run": cfg.run.name}
    job_values = {**values["job"], "useCluster": False}
    rayjob = {"apiVersion": "ray.io/v1", "kind": "RayJob",
              "metadata": {"name": job_name, "namespace": namespace, "labels": labels},
              "spec": rayjob_spec(release, values, job_values, train_entrypoint(values, preset), config_map)}
    configmap = {"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": config_map, "namespace": namespace, "labels": labels},
                 "data": {RUN_CONFIG_KEY: cfg.to_yaml()}}
    return rayjob, configmap


def resolve_config(preset: str, values: dict[str, Any], overrides: list[str] = (),
                   config_file: str | Path | None = None) -> Config:
    """preset -> the values' run config (as the chart writes it) -> --config FILE -> key=value."""
    import tempfile

    from streamguard import config as cfgmod

    from_values = values_config_overrides(values)
    with tempfile.TemporaryDirectory() as tmp:
        merged = from_values
        if config_file is not None:
            try:
                text = Path(config_file).read_text()
            except OSError as exc:
                raise ConfigError(f"cannot read config file {str(config_file)!r}: {exc.strerror}") from None
            try:
                extra = yaml.safe_load(text) or {}
            except yaml.YAMLError as exc:
                raise ConfigError(f"config file {str(config_file)!r} is not valid YAML: {str(exc).splitlines()[0]}") from None
            if not isinstance(extra, dict):
                raise ConfigError(f"config file {str(config_file)!r} must be a mapping of sections")
            merged = _deep_merge(merged, extra)
        path = Path(tmp) / RUN_CONFIG_KEY
        path.write_text(yaml.safe_dump(merged))
        return cfgmod.load(preset, list(overrides), config_file=path)


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Config-file merge (as `config.load` merges `--config` over the preset): maps merge, values replace."""
    merged = dict(base)
    for key, value in extra.items():
        both = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = _deep_merge(merged[key], value) if both else value
    return merged


def to_yaml(*objects: dict[str, Any]) -> str:
    return "---\n".join(yaml.safe_dump(o, sort_keys=False) for o in objects)
