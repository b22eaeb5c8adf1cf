"""Ray stays in streamguard.distributed: importing and using the core must not load ray."""

import subprocess
import sys

CORE = ["streamguard.cli", "streamguard.config", "streamguard.train.loop", "streamguard.checkpoint",
        "streamguard.tracks.transformer", "streamguard.tracks.hybrid", "streamguard.tracks.fusion",
        "streamguard.data.augment", "streamguard.pretrained",
        "streamguard.storage", "streamguard.runtime", "streamguard.metrics", "streamguard.tracks.gnn",
        "streamguard.data.dataset", "streamguard.data.prepare", "streamguard.data.process",
        "streamguard.data.shards", "streamguard.data.sources", "streamguard.data.tokens", "streamguard.evaluation.report", "streamguard.evaluation.evaluate_run"]


def test_core_does_not_import_ray():
    code = "import importlib, sys\n" + "".join(f"importlib.import_module({m!r})\n" for m in CORE) + \
        "bad = sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.'))\nprint(bad)\nsys.exit(1 if bad else 0)\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, f"ray imported by the core: {proc.stdout} {proc.stderr[-2000:]}"


def test_no_source_outside_distributed_mentions_import_ray():
    from pathlib import Path

    import streamguard

    root = Path(streamguard.__file__).parent
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py")
                 if "distributed" not in p.parts
                 and any(line.lstrip().startswith(("import ray", "from ray")) for line in p.read_text().splitlines())]
    assert not offenders
