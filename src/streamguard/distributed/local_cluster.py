"""A real multi-node Ray cluster on one machine: the chaos tests and the recovery benchmark.

`ray.cluster_utils.Cluster` starts a head (GCS, dashboard, no CPUs, so no training runs on
it) and worker nodes, each a separate raylet process with its own ports and one CPU: two
training workers therefore land on two nodes. The cluster has its own temp dir and is
stopped by its own handles, never by `ray stop` (which would kill every Ray on the host).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import psutil


class LocalCluster:
    def __init__(self, *, worker_nodes: int = 2, env: dict[str, str] | None = None, health_check_period_ms: int = 1000,
                 health_check_failure_threshold: int = 3):
        from ray.cluster_utils import Cluster

        # Ray writes the "current cluster" address under /tmp/ray even with a private temp dir.
        Path("/tmp/ray").mkdir(exist_ok=True)
        self.temp_dir = tempfile.mkdtemp(prefix="sgc", dir="/tmp")  # AF_UNIX paths must stay short
        # raylets, and so every worker and job, inherit these: S3 credentials, and this
        # interpreter first on PATH (a job's `python` must be the one with streamguard).
        env = {**(env or {}), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        saved = dict(os.environ)
        os.environ.update(env)
        os.environ.pop("RAY_ADDRESS", None)
        try:
            started = time.time()
            self.cluster = Cluster(initialize_head=True, head_node_args={
                "num_cpus": 0, "temp_dir": self.temp_dir, "include_dashboard": True,
                # fast node-death detection: period x misses (docs/operations.md)
                "_system_config": {"health_check_period_ms": health_check_period_ms,
                                   "health_check_failure_threshold": health_check_failure_threshold}})
            self.workers = [self.add_node() for _ in range(worker_nodes)]
            self.cluster.wait_for_nodes()
            self.start_s = time.time() - started
        finally:
            os.environ.clear()
            os.environ.update(saved)
        self.env = env

    @property
    def address(self) -> str:
        return self.cluster.address

    @property
    def dashboard_url(self) -> str:
        return f"http://{self.cluster.head_node.webui_url}"

    def add_node(self):
        node = self.cluster.add_node(num_cpus=1)
        return node

    def add_spare_node(self):
        saved = dict(os.environ)
        os.environ.update(self.env)
        try:
            node = self.add_node()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        self.workers.append(node)
        self.cluster.wait_for_nodes()
        return node

    def retire_node(self, node, *, graceful: bool = False) -> None:
        """Kill a worker node as a lost VM dies: SIGKILL to every process of the node at
        once (workers first, so none outlives its raylet and reacts), then its raylet."""
        if not graceful:
            try:
                for proc in psutil.Process(self._raylet_pid(node)).children(recursive=True):
                    proc.kill()
            except psutil.NoSuchProcess:
                pass
        self.cluster.remove_node(node, allow_graceful=graceful)
        self.workers.remove(node)

    def replace_node(self, node, *, graceful: bool = False):
        """Kill a worker node and start a fresh one in its place."""
        self.retire_node(node, graceful=graceful)
        return self.add_spare_node()

    @staticmethod
    def _raylet_pid(node) -> int:
        return node.all_processes["raylet"][0].process.pid

    def train_workers(self) -> dict[int, object]:
        """pid -> node of every live Ray Train worker process in this cluster."""
        found = {}
        for node in self.workers:
            try:
                raylet = psutil.Process(self._raylet_pid(node))
                children = raylet.children(recursive=True)
            except psutil.NoSuchProcess:
                continue
            for proc in children:
                try:
                    if "RayTrainWorker" in " ".join(proc.cmdline()):
                        found[proc.pid] = node
                except psutil.NoSuchProcess:
                    pass
        return found

    def node_id(self, node) -> str:
        return node.node_id

    def shutdown(self) -> None:
        self.cluster.shutdown()
