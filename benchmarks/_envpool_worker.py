"""EnvPool contender for sim_throughput.py, run in EnvPool's own virtualenv (its pins differ from embodia's).

A line protocol on stdin/stdout so the benchmark can interleave it with the other contenders: each request is one
JSON line {"env_id", "num_envs", "mode" ("sync"|"async"), "threads", "seconds", "kwargs"}; the reply is one JSON line
{"rate": env-steps/s} (or {"error": ...}). Pools are built once per configuration and kept, so a reply times
stepping only. Needs only envpool and numpy.
"""

from __future__ import annotations

import json
import sys
import time

import envpool
import numpy as np


def make_pool(env_id: str, num_envs: int, mode: str, threads: int, kwargs: str):
    """An EnvPool of `num_envs` envs; async mode returns half of them per call (EnvPool's usual async setup)."""
    batch_size = num_envs if mode == "sync" else max(1, num_envs // 2)
    pool = envpool.make(env_id, env_type="gymnasium", num_envs=num_envs, batch_size=batch_size,
                        num_threads=threads, seed=0, **json.loads(kwargs))
    return pool, batch_size


def sync_stepper(pool, num_envs: int, rng: np.random.Generator):
    """One call: actions for every env, `step` returns when all have stepped."""
    pool.reset()
    low, high = pool.action_space.low, pool.action_space.high
    shape = (num_envs, *pool.action_space.shape)
    return lambda: pool.step(rng.uniform(low, high, shape).astype(np.float64))


def async_stepper(pool, batch_size: int, rng: np.random.Generator):
    """One call: receive the first `batch_size` envs that finished, send their next actions."""
    pool.async_reset()
    low, high = pool.action_space.low, pool.action_space.high
    shape = (batch_size, *pool.action_space.shape)

    def step() -> None:
        info = pool.recv()[-1]
        pool.send(rng.uniform(low, high, shape).astype(np.float64), info["env_id"])

    return step


def measure(step, steps_per_call: int, seconds: float) -> float:
    """Env-steps per second of `step` over about `seconds` (after one warm-up call)."""
    step()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        calls += 1
    return calls * steps_per_call / (time.perf_counter() - start)


def main() -> None:
    steppers: dict[tuple, tuple] = {}
    rng = np.random.default_rng(0)
    print(json.dumps({"ready": True, "envpool": envpool.__version__}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        key = (request["env_id"], request["num_envs"], request["mode"], request["threads"],
               json.dumps(request.get("kwargs", {}), sort_keys=True))
        try:
            if key not in steppers:
                pool, batch_size = make_pool(*key)
                stepper = (sync_stepper(pool, key[1], rng) if key[2] == "sync" else async_stepper(pool, batch_size, rng))
                steppers[key] = (stepper, batch_size)
            stepper, batch_size = steppers[key]
            reply = {"rate": measure(stepper, batch_size, request["seconds"])}
        except Exception as error:  # noqa: BLE001  (the benchmark prints it and goes on without this figure)
            reply = {"error": f"{type(error).__name__}: {error}"}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
