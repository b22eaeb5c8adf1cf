"""`ray job submit` / RayJob entrypoint: train on the cluster the job runs on.

    ray job submit --working-dir . -- python ray_jobs/train.py --preset quickstart \
        run.storage_path=s3://bucket/runs ray.num_workers=4 [section.key=value ...]

Same options as `streamguard train --ray` (see --help). The job joins its cluster through
RAY_ADDRESS. Exit codes: 0 done, 2 bad input, 143 stopped by SIGTERM after a checkpoint (a
retry of the same job resumes from it).
"""

import sys

from streamguard.cli import main

if __name__ == "__main__":
    sys.argv = ["streamguard", "train", "--ray", *sys.argv[1:]]
    main()
