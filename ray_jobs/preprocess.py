"""`ray job submit` entrypoint: prepare a dataset with Ray Data on the cluster.

    ray job submit --working-dir . -- python ray_jobs/preprocess.py \
        --source devign:s3://bucket/devign/train.jsonl.gz --out s3://bucket/prepared/devign [data.key=value ...]

Same options as `streamguard data prepare` (see --help); always uses Ray Data, joining the
cluster the job runs on (RAY_ADDRESS).
"""

import sys

from streamguard.cli import main

if __name__ == "__main__":
    sys.argv = ["streamguard", "data", "prepare", "--ray", *sys.argv[1:]]
    main()
