"""A run's home: `<storage_path>/<run name>` on local disk or S3.

Artefacts (config, run info, history, metrics, plots, predictions) are written to a local
directory first -- the run root itself when it is local, a mirror under the temp dir when
it is on S3 -- and uploaded from there, so plots and JSON are always readable locally.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from streamguard.checkpoint import CheckpointStore
from streamguard.storage import Storage, atomic_write, join, open_storage


class RunDir:
    def __init__(self, storage_path: str, name: str, **storage_options):
        self.name = name
        self.uri = join(storage_path, name)
        self.storage: Storage = open_storage(self.uri, **storage_options)
        self.local = self.storage.local_path() or Path(tempfile.gettempdir()) / "streamguard-runs" / name
        self.local.mkdir(parents=True, exist_ok=True)
        self.remote = self.storage.local_path() is None

    def checkpoints(self, *, keep_last: int, keep_best: bool) -> CheckpointStore:
        return CheckpointStore(self.storage.child("checkpoints"), keep_last=keep_last, keep_best=keep_best)

    def path(self, rel: str) -> Path:
        path = self.local / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def write_text(self, rel: str, text: str) -> Path:
        path = self.path(rel)
        atomic_write(path, text.encode("utf-8"))
        self.publish(rel)
        return path

    def write_json(self, rel: str, obj) -> Path:
        from streamguard.train.evaluate import to_json

        return self.write_text(rel, to_json(obj))

    def publish(self, rel: str) -> None:
        """Upload a file already written under `self.local` (no-op for local runs)."""
        if self.remote:
            self.storage.upload_file(self.local / rel, rel)

    def display(self, rel: str = "") -> str:
        """Where a user finds `rel`: the S3 URI and its local mirror, or the local path."""
        local = self.local / rel if rel else self.local
        return f"{join(self.uri, rel)} (local copy: {local})" if self.remote else str(local)
