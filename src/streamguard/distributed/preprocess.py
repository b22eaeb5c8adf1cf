"""Ray Data executor for `streamguard data prepare --ray` (and `ray_jobs/preprocess.py`).

The records become a Ray Dataset; `map_batches` runs the same `process_chunk` as the local
process pool, with order preserved. A row depends only on its own record, so the shards
are identical to the pool's whatever the batch boundaries.
"""

from __future__ import annotations

import os

import pyarrow as pa

from streamguard.data.process import ProcessSettings, process_chunk


def connect() -> None:
    import ray

    if not ray.is_initialized():
        # RAY_ADDRESS (set by `ray job submit` and inside the cluster) joins that cluster;
        # without it a local Ray instance is started for this process.
        ray.init(address=os.environ.get("RAY_ADDRESS"), log_to_driver=False)


def run_ray_data(records: list[dict], settings: ProcessSettings, *, batch_size: int = 64,
                 concurrency: int | None = None) -> pa.Table:
    """All records processed by Ray Data tasks; one output row per record, in order."""
    import ray

    connect()
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    if not records:
        from streamguard.data.shards import PROCESS_SCHEMA

        return PROCESS_SCHEMA.empty_table()

    def process(batch: pa.Table) -> pa.Table:  # runs in Ray workers; grammar/tokenizer cached per process
        return process_chunk(batch.to_pylist(), settings)

    ds = ray.data.from_arrow(pa.Table.from_pylist(records))
    out = ds.map_batches(process, batch_size=batch_size, batch_format="pyarrow", concurrency=concurrency)
    return pa.concat_tables(ray.get(out.to_arrow_refs()))
