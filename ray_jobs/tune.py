"""`ray job submit` / RayJob entrypoint: run (or restore) a Ray Tune sweep on the cluster.

    ray job submit --working-dir . -- python ray_jobs/tune.py --preset quickstart \
        --sweep quickstart run.storage_path=s3://bucket/sweeps [section.key=value ...]

Same options as `streamguard tune` (see --help). Re-submitting the same sweep name restores
it: finished trials are kept and unfinished ones resume from their checkpoints.
"""

import sys

from streamguard.cli import main

if __name__ == "__main__":
    sys.argv = ["streamguard", "tune", *sys.argv[1:]]
    main()
