"""`streamguard submit`: create a run's ConfigMap and RayJob through the kubernetes client,
optionally follow it, and turn API errors into one line that says what to do."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamguard.errors import StreamGuardError

GROUP, VERSION, PLURAL = "ray.io", "v1", "rayjobs"
KUBERAY_INSTALL = ("install the KubeRay operator (it brings the ray.io CRDs): helm repo add kuberay "
                   "https://ray-project.github.io/kuberay-helm/ && helm install kuberay-operator "
                   "kuberay/kuberay-operator --version 1.7.0; see docs/kubernetes.md")
TERMINAL = {"Complete", "Failed", "ValidationFailed"}


class SubmitError(StreamGuardError):
    """The cluster refused the run, or cannot be reached."""


@dataclass
class Cluster:
    custom: Any  # kubernetes.client.CustomObjectsApi
    core: Any  # kubernetes.client.CoreV1Api
    namespace: str
    host: str


def connect(namespace: str | None = None, kubeconfig: str | Path | None = None, context: str | None = None) -> Cluster:
    """Kubeconfig (--kubeconfig, $KUBECONFIG, ~/.kube/config), else the in-cluster service account."""
    try:
        from kubernetes import client, config
    except ImportError:
        raise SubmitError("`streamguard submit` needs the kubernetes client: pip install 'streamguard[k8s]'") from None
    api_client, default_ns = None, "default"
    try:
        api_client = config.new_client_from_config(config_file=str(kubeconfig) if kubeconfig else None, context=context)
        _, active = config.list_kube_config_contexts(config_file=str(kubeconfig) if kubeconfig else None)
        if context:
            contexts, _ = config.list_kube_config_contexts(config_file=str(kubeconfig) if kubeconfig else None)
            active = next((c for c in contexts if c["name"] == context), active)
        default_ns = (active or {}).get("context", {}).get("namespace") or "default"
    except (config.ConfigException, OSError) as exc:
        if kubeconfig or context:
            raise SubmitError(f"cannot use kubeconfig {str(kubeconfig or '~/.kube/config')!r}"
                              f"{f' context {context!r}' if context else ''}: {exc}") from None
        try:
            config.load_incluster_config()
            api_client = client.ApiClient()
            ns_file = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
            default_ns = ns_file.read_text().strip() if ns_file.exists() else "default"
        except config.ConfigException:
            raise SubmitError(
                "no Kubernetes credentials: no kubeconfig at $KUBECONFIG or ~/.kube/config, and not running in a pod. "
                "Get one with e.g. `aws eks update-kubeconfig --name CLUSTER` or `gcloud container clusters "
                "get-credentials CLUSTER`, or pass --kubeconfig FILE (or use --dry-run to only print the YAML)") from None
    return Cluster(client.CustomObjectsApi(api_client), client.CoreV1Api(api_client), namespace or default_ns,
                   api_client.configuration.host)


# ------------------------------------------------------------------------------- errors


def _status(exc: Exception) -> dict[str, Any]:
    try:
        return json.loads(getattr(exc, "body", None) or "{}")
    except (TypeError, ValueError):
        return {}


def explain(exc: Exception, what: str, cluster: Cluster, *, run_name: str = "") -> SubmitError:
    """An ApiException (or connection error) as a SubmitError that says what to do."""
    from kubernetes.client.exceptions import ApiException

    if not isinstance(exc, ApiException):
        return SubmitError(f"cannot reach the Kubernetes API at {cluster.host}: {exc}. "
                           "Check the cluster is up and your kubeconfig context (`kubectl cluster-info`)")
    status = _status(exc)
    reason, message = status.get("reason", ""), status.get("message") or exc.reason
    if exc.status == 409 or reason == "AlreadyExists":
        return SubmitError(
            f"{what} already exists in namespace {cluster.namespace}. Pick a new run name "
            f"(run.name=...; a new name starts from scratch) or pass --replace to delete the old job and start "
            f"it again{f' (run {run_name!r} resumes from its newest checkpoint)' if run_name else ''}")
    if exc.status == 422 or reason == "Invalid":
        causes = (status.get("details") or {}).get("causes") or []
        fields = "; ".join(f"{c.get('field', '?')}: {c.get('message', c.get('reason', ''))}" for c in causes)
        return SubmitError(f"the API server rejected {what}: {fields or message}")
    if exc.status == 400:  # e.g. a strict decoding error: a field this KubeRay version does not know
        return SubmitError(f"the API server rejected {what}: {message}")
    if exc.status == 404 and reason == "NotFound" and "namespace" in message.lower():
        return SubmitError(f"namespace {cluster.namespace!r} does not exist: create it (kubectl create namespace "
                           f"{cluster.namespace}) or pass --namespace")
    if exc.status == 404 and what.startswith("RayJob"):
        return SubmitError(f"the cluster has no {GROUP}/{VERSION} RayJob resource ({message}): {KUBERAY_INSTALL}")
    if exc.status in (401, 403):
        return SubmitError(f"not allowed to create {what} in namespace {cluster.namespace}: {message}. "
                           "Ask for a binding to the chart's `<release>-streamguard-submitter` Role (see docs/kubernetes.md)")
    return SubmitError(f"creating {what} failed: HTTP {exc.status} {message}")


# ---------------------------------------------------------------------------- creation


def check_service_account(cluster: Cluster, name: str | None) -> None:
    """A missing ServiceAccount would leave the job's pods uncreated without a visible error."""
    if not name:
        return
    from kubernetes.client.exceptions import ApiException

    try:
        cluster.core.read_namespaced_service_account(name, cluster.namespace)
    except ApiException as exc:
        if exc.status == 404:
            raise SubmitError(
                f"ServiceAccount {name!r} does not exist in namespace {cluster.namespace}: install the chart there "
                f"first (helm install <release> helm/streamguard -n {cluster.namespace} --set cluster.enabled=false), "
                f"or pass --release to match the installed release, or set serviceAccount.name in --values") from None
        if exc.status not in (401, 403):  # cannot check: let the create call speak
            raise explain(exc, f"ServiceAccount {name}", cluster) from None
    except Exception as exc:  # noqa: BLE001 - connection errors
        raise explain(exc, f"ServiceAccount {name}", cluster) from None


def delete_existing(cluster: Cluster, name: str, config_map: str, timeout_s: float = 120.0) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, cluster.namespace, PLURAL, name,
                                                       propagation_policy="Foreground")
    except ApiException as exc:
        if exc.status != 404:
            raise explain(exc, f"RayJob {name}", cluster) from None
    deadline = time.monotonic() + timeout_s
    while True:  # KubeRay's finalizer tears the old cluster down first
        try:
            cluster.custom.get_namespaced_custom_object(GROUP, VERSION, cluster.namespace, PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                break
            raise explain(exc, f"RayJob {name}", cluster) from None
        if time.monotonic() > deadline:
            raise SubmitError(f"RayJob {name} is still being deleted after {timeout_s:.0f} s; try again later")
        time.sleep(1.0)
    try:
        cluster.core.delete_namespaced_config_map(config_map, cluster.namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise explain(exc, f"ConfigMap {config_map}", cluster) from None


def create(cluster: Cluster, rayjob: dict[str, Any], configmap: dict[str, Any], *, replace: bool = False,
           run_name: str = "", service_account: str | None = None) -> dict[str, Any]:
    """ConfigMap, then RayJob, then the ConfigMap owned by the RayJob (deleted with it)."""
    from kubernetes.client.exceptions import ApiException

    name, cm_name = rayjob["metadata"]["name"], configmap["metadata"]["name"]
    rayjob["metadata"]["namespace"] = configmap["metadata"]["namespace"] = cluster.namespace
    check_service_account(cluster, service_account)
    if replace:
        delete_existing(cluster, name, cm_name)
    try:
        cluster.core.create_namespaced_config_map(cluster.namespace, configmap, field_validation="Strict")
    except Exception as exc:  # noqa: BLE001 - ApiException and connection errors alike
        raise explain(exc, f"ConfigMap {cm_name} (the run config of RayJob {name})", cluster, run_name=run_name) from None
    try:
        # Strict: a field the installed CRD does not know is an error, not silently pruned.
        created = cluster.custom.create_namespaced_custom_object(GROUP, VERSION, cluster.namespace, PLURAL, rayjob,
                                                                 field_validation="Strict")
    except Exception as exc:  # noqa: BLE001
        try:  # leave nothing behind for a job that does not exist
            cluster.core.delete_namespaced_config_map(cm_name, cluster.namespace)
        except ApiException:
            pass
        raise explain(exc, f"RayJob {name}", cluster, run_name=run_name) from None
    owner = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "RayJob", "name": name,
             "uid": created["metadata"]["uid"], "blockOwnerDeletion": False}
    try:
        cluster.core.patch_namespaced_config_map(cm_name, cluster.namespace, {"metadata": {"ownerReferences": [owner]}})
    except ApiException:
        pass  # only garbage collection is lost; the job runs
    return created


# ------------------------------------------------------------------------------- watch


def watch(cluster: Cluster, name: str, *, echo: Callable[[str], None], poll_s: float = 2.0,
          timeout_s: float | None = None, follow_logs: bool = True) -> bool:
    """Print status changes (and the submitter's log, K8sJobMode) until the job ends; True if it succeeded."""
    from kubernetes.client.exceptions import ApiException

    last, logs, stop = None, None, threading.Event()
    deadline = time.monotonic() + timeout_s if timeout_s else None
    try:
        while True:
            try:
                job = cluster.custom.get_namespaced_custom_object(GROUP, VERSION, cluster.namespace, PLURAL, name)
            except ApiException as exc:
                raise explain(exc, f"RayJob {name}", cluster) from None
            status = job.get("status") or {}
            state = (status.get("jobDeploymentStatus") or "New", status.get("jobStatus") or "PENDING")
            if state != last:
                extra = f" on cluster {status['rayClusterName']}" if status.get("rayClusterName") else ""
                echo(f"[{time.strftime('%H:%M:%S')}] {name}: {state[0]} (job {state[1]}){extra}"
                     + (f": {status['message']}" if status.get("message") else ""))
                last = state
            if follow_logs and logs is None and state[0] == "Running":
                logs = _start_log_thread(cluster, name, echo, stop)
            if state[0] in TERMINAL:
                if logs is not None:
                    logs.join(timeout=10)  # the stream ends when the submitter pod does
                return state[0] == "Complete" and state[1] == "SUCCEEDED"
            if deadline and time.monotonic() > deadline:
                raise SubmitError(f"gave up watching {name} after {timeout_s:.0f} s; it keeps running "
                                  f"(kubectl -n {cluster.namespace} get rayjob {name})")
            time.sleep(poll_s)
    finally:
        stop.set()


def _start_log_thread(cluster: Cluster, name: str, echo: Callable[[str], None],
                      stop: threading.Event) -> threading.Thread | None:
    """Follow the log of the submitter pod (a Job named after the RayJob): `ray job submit` tails
    the driver's output there. None while no such pod exists yet."""
    from kubernetes.client.exceptions import ApiException

    try:
        pods = cluster.core.list_namespaced_pod(cluster.namespace, label_selector=f"job-name={name}").items
    except ApiException:
        return None
    if not pods:
        return None
    pod = pods[-1].metadata.name

    def follow() -> None:
        try:
            stream = cluster.core.read_namespaced_pod_log(pod, cluster.namespace, follow=True, _preload_content=False)
            for line in stream.stream():
                if stop.is_set():
                    break
                for text in line.decode(errors="replace").splitlines():
                    echo(f"  | {text}")
        except Exception as exc:  # noqa: BLE001 - logs are a convenience; status still decides
            echo(f"  (log stream of {pod} ended: {exc})")

    thread = threading.Thread(target=follow, name=f"logs-{pod}", daemon=True)
    thread.start()
    return thread
