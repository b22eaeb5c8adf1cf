"""Rendering and validation shared by the chart, manifest and submit tests.

- `render()` runs the real Helm engine (helm-python-sdk binds Helm's Go SDK) on the chart.
- `validate_builtin()` checks built-in kinds with kubernetes-validate (strict, Kubernetes 1.31).
- `validate_crd()` checks RayCluster / RayJob against the KubeRay 1.7 CRD openAPIV3Schema, made
  strict (unknown fields are errors, as with `kubectl apply --validate=strict`).
- `kuberay_rules()` applies the checks KubeRay's controller makes before it acts on an object
  (ray-operator/controllers/ray/utils/validation.go), which the CRD schema cannot express.
"""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "streamguard"
EXAMPLES = sorted((CHART / "examples").glob("*.yaml"))
CRD_DIR = REPO.parent / "shared" / "reference" / "kuberay-crds-v1.7.0"
KUBE_VERSION = "1.31"
CUSTOM_KINDS = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml"}
# Prometheus Operator kinds: no schema ships here; their shape is asserted by the tests.
OPERATOR_KINDS = {"PodMonitor", "PrometheusRule"}
DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def helm():
    return pytest.importorskip("helm_python", reason="helm-python-sdk (dev extra) renders the chart")


def render(values: dict | None = None, *, release: str = "sg", namespace: str = "ml") -> tuple[list[dict], str]:
    """(objects, NOTES.txt) of `helm template` with these values."""
    h = helm()
    with h.Chart.load(str(CHART)) as chart:
        out = chart.render(values=values, name=release, namespace=namespace, is_install=True)
    objects, notes = [], ""
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        objects += [d for d in yaml.safe_load_all(text) if d]
    return objects, notes


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict], kind: str) -> dict:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def example_values(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


# ------------------------------------------------------------------------- validation


def validate_builtin(obj: dict) -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate (dev extra)")
    try:
        kv.validate(obj, KUBE_VERSION, strict=True)
    except kv.ValidationError as exc:
        where = "/".join(str(p) for p in exc.path)
        raise AssertionError(f"{obj['kind']}/{obj['metadata'].get('name')}: {where}: {exc.message}") from None


def crds_present() -> bool:
    return all((CRD_DIR / f).is_file() for f in CUSTOM_KINDS.values())


def need_crds() -> None:
    if not crds_present():
        pytest.skip(f"KubeRay CRDs not found at {CRD_DIR} (../shared/reference/ is not part of a clone)")


@functools.cache
def crd_schema(kind: str, version: str = "v1") -> dict:
    need_crds()
    crd = yaml.safe_load((CRD_DIR / CUSTOM_KINDS[kind]).read_text())
    served = {v["name"]: v for v in crd["spec"]["versions"]}
    return strict_schema(served[version]["schema"]["openAPIV3Schema"])


def crd_plural(kind: str) -> str:
    need_crds()
    return yaml.safe_load((CRD_DIR / CUSTOM_KINDS[kind]).read_text())["spec"]["names"]["plural"]


def strict_schema(schema: Any) -> Any:
    """Structural schema -> JSON schema that rejects unknown fields and honours `nullable`."""
    if isinstance(schema, list):
        return [strict_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict_schema(v) for k, v in schema.items()}
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    if out.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def crd_errors(obj: dict) -> list[str]:
    """Schema errors as `path: message` (empty when valid)."""
    import jsonschema

    version = obj.get("apiVersion", "").partition("/")[2] or "v1"
    validator = jsonschema.Draft7Validator(crd_schema(obj["kind"], version))
    return [f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
            for e in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))]


def validate_crd(obj: dict) -> None:
    errors = crd_errors(obj)
    assert not errors, f"{obj['kind']}/{obj['metadata']['name']} fails the KubeRay CRD schema:\n" + "\n".join(errors[:20])


def kuberay_rules(obj: dict) -> list[str]:
    """KubeRay 1.7's controller-side validation (names, cluster and job consistency)."""
    errors = []
    name, kind, spec = obj["metadata"]["name"], obj["kind"], obj.get("spec") or {}
    limit = {"RayCluster": 53, "RayJob": 47}[kind]
    if len(name) > limit:
        errors.append(f"{kind} name {name!r} is longer than {limit} characters")
    if not DNS1035.match(name):
        errors.append(f"{kind} name {name!r} is not a DNS-1035 label")
    cluster = spec if kind == "RayCluster" else spec.get("rayClusterSpec")
    if kind == "RayJob":
        if spec.get("shutdownAfterJobFinishes") is not True and (spec.get("ttlSecondsAfterFinished") or 0) > 0:
            errors.append("ttlSecondsAfterFinished needs shutdownAfterJobFinishes")
        if bool(spec.get("clusterSelector")) == bool(cluster):
            errors.append("exactly one of rayClusterSpec or clusterSelector must be set")
        if spec.get("activeDeadlineSeconds") is not None and spec["activeDeadlineSeconds"] <= 0:
            errors.append("activeDeadlineSeconds must be positive")
        if (spec.get("backoffLimit") or 0) < 0:
            errors.append("backoffLimit must not be negative")
        mode = spec.get("submissionMode", "K8sJobMode")
        if mode not in {"K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"}:
            errors.append(f"unknown submissionMode {mode!r}")
        if "runtimeEnvYAML" in spec:
            try:
                yaml.safe_load(spec["runtimeEnvYAML"])
            except yaml.YAMLError as exc:
                errors.append(f"runtimeEnvYAML is not YAML: {exc}")
        if not spec.get("entrypoint") and mode != "InteractiveMode":
            errors.append("entrypoint is empty")
    if cluster:
        if not cluster["headGroupSpec"]["template"]["spec"].get("containers"):
            errors.append("headGroupSpec has no container")
        for group in cluster.get("workerGroupSpecs") or []:
            if not group["template"]["spec"].get("containers"):
                errors.append(f"worker group {group['groupName']} has no container")
            if not 0 <= group.get("minReplicas", 0) <= group.get("maxReplicas", 2**31):
                errors.append(f"worker group {group['groupName']}: minReplicas > maxReplicas")
    return errors


def validate_all(objects: list[dict]) -> None:
    """Every object: built-in kinds strictly against Kubernetes 1.31, Ray kinds against the CRDs."""
    for obj in objects:
        if obj["kind"] in CUSTOM_KINDS:
            if crds_present():
                validate_crd(obj)
            assert not kuberay_rules(obj), kuberay_rules(obj)
        elif obj["kind"] not in OPERATOR_KINDS:
            validate_builtin(obj)


def pod_templates(obj: dict) -> list[tuple[str, dict]]:
    """(where, pod template) of every pod a RayCluster or RayJob makes."""
    spec = obj["spec"]
    out = []
    cluster = spec if obj["kind"] == "RayCluster" else spec.get("rayClusterSpec")
    if cluster:
        out.append(("head", cluster["headGroupSpec"]["template"]))
        out += [(f"worker:{g['groupName']}", g["template"]) for g in cluster.get("workerGroupSpecs") or []]
    if obj["kind"] == "RayJob" and spec.get("submitterPodTemplate"):
        out.append(("submitter", spec["submitterPodTemplate"]))
    return out


def deepcopy(obj):
    return copy.deepcopy(obj)
