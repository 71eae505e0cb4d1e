"""Shards of a stage as Ray tasks: the `map_shards` that generation and evaluation take, run on a Ray cluster.

A shard call carries plain data (a config, an attempt or seed range, a path) and builds its environments on the
node it lands on. Each task asks `SHARD_CPUS` CPU, runs the simulator on that many threads and renders the way this
machine was told to (MUJOCO_GL in its runtime env). The `generate` and `evaluate` jobs shard when their config asks
`shards` > 1 and Ray is reachable (this process is connected, or RAY_ADDRESS names the cluster, as the Ray executor
sets it for an attempt); otherwise the shards run in turn in the job's own process, with the same result. Shards
write into the stage's staging directory, so on a multi-node cluster EMBODIA_HOME must be shared storage.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from embodia.core.errors import UserError
from embodia.core.manifest import Manifest
from embodia.core.reporter import Reporter
from embodia.core.stage import ShardMap, map_in_process
from embodia.platform.ray_executor import ray_module, task_env_vars

SHARD_CPUS = 1


def shard_runtime_env() -> dict[str, Any]:
    """The runtime env of a shard task: thread counts equal to its CPUs, and this machine's GL backend."""
    return {"env_vars": task_env_vars(SHARD_CPUS)}


def ray_map(function: Callable[..., Any], calls: list[tuple]) -> list[Any]:
    """`[function(*args) for args in calls]` as one Ray task a call (SHARD_CPUS CPU each), results in call order;
    a shard that raises re-raises here with its own message."""
    ray = ray_module("a sharded step on Ray")
    remote = ray.remote(function).options(num_cpus=SHARD_CPUS, runtime_env=shard_runtime_env(),
                                          name=f"embodia-shard-{getattr(function, '__name__', 'call')}")
    refs = [remote.remote(*args) for args in calls]
    try:
        return ray.get(refs)
    except BaseException as error:
        for ref in refs:  # the other shards stop too (a finished one is left as it is)
            ray.cancel(ref, force=True)
        cause = getattr(error, "cause", None)
        if isinstance(cause, UserError):  # a shard's user error stays one line, not a remote traceback
            raise type(cause)(str(cause)) from None
        raise


def shard_map() -> ShardMap:
    """`ray_map` when Ray is reachable (this process is connected, or RAY_ADDRESS names a cluster), else shards
    run in turn in this process (same output, no parallelism)."""
    try:
        import ray
    except ImportError:
        return map_in_process
    if not ray.is_initialized() and os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
    if not ray.is_initialized():
        print("shards run one after another in this process (Ray is not reachable: no RAY_ADDRESS)", flush=True)
        return map_in_process
    print(f"shards run as Ray tasks on the cluster at {ray.get_runtime_context().gcs_address}", flush=True)
    return ray_map


def run_generate(config: Mapping[str, Any], out: str | Path, *, inputs: Mapping[str, Any] | None = None,
                 reporter: Reporter | None = None, resume: bool = False) -> Manifest:
    """The `generate` job: the generation stage, its shards (config `shards` > 1) as Ray tasks when Ray is reachable."""
    from embodia.data import generate

    return generate.run(config, out, inputs=inputs, reporter=reporter, resume=resume, map_shards=_map_for(config))


def run_evaluate(config: Mapping[str, Any], out: str | Path, *, inputs: Mapping[str, Any] | None = None,
                 reporter: Reporter | None = None) -> Manifest:
    """The `evaluate` job: the evaluation stage, its shards (config `shards` > 1) as Ray tasks when Ray is reachable."""
    from embodia.evaluate import stage

    return stage.run(config, out, inputs=inputs, reporter=reporter, map_shards=_map_for(config))


def _map_for(config: Mapping[str, Any] | Any) -> ShardMap | None:
    shards = config.get("shards", 1) if isinstance(config, Mapping) else getattr(config, "shards", 1)
    return shard_map() if isinstance(shards, int) and shards > 1 else None
