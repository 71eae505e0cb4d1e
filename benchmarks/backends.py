"""Physics backends side by side, in one run: env-steps/s of BatchEnv.step per backend and batch size.

Usage: python benchmarks/backends.py [--tasks cheetah-run arm-reach] [--sizes 64 256 1024 4096]
       [--mjx-sizes 64 256] [--warp-sizes 64 256 1024] [--seconds 2] [--json out.json]

For each task, backend and batch size: the first step's wall time (MJX: trace + XLA compile for that batch
shape; Warp: kernel JIT, cached on disk after the first run), then env-steps/s of `BatchEnv.step` (physics,
observation, reward, autoreset; random actions) and the share of a step spent moving the state between host
and device (what device-resident tasks would save). Prints the load average, since the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

import embodia  # noqa: F401  (picks the GL backend before mujoco loads)
from embodia.sim.backend import backend_status
from embodia.tasks import BatchEnv


def measure(task: str, backend: str, num_envs: int, seconds: float) -> dict:
    """First-step time, steady env-steps/s and host<->device copy share of one (task, backend, size)."""
    env = BatchEnv(task, num_envs=num_envs, backend=backend, nthread=2, max_episode_steps=1000)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    actions = lambda: rng.uniform(-1, 1, (num_envs, env.action_dim))  # noqa: E731
    start = time.perf_counter()
    env.step(actions())
    first = time.perf_counter() - start
    steps, start = 0, time.perf_counter()
    while steps < 2 or time.perf_counter() - start < seconds:
        env.step(actions())
        steps += 1
    per_step = (time.perf_counter() - start) / steps
    copy_s = host_copy_seconds(env) if backend != "cpu" else 0.0
    env.close()
    return {"first_step_s": first, "env_steps_per_s": num_envs / per_step, "steps": steps,
            "host_copy_share": copy_s / per_step}


def host_copy_seconds(env: BatchEnv, repeats: int = 5) -> float:
    """Seconds per control step spent packing the state, sending it to the device and reading it back."""
    sim, backend = env.sim, env.sim.backend
    control = np.zeros((sim.num_envs, 1, sim.model.nu + (7 * sim.model.nmocap if sim.model.nmocap else 0)))
    start = time.perf_counter()
    for _ in range(repeats):
        inputs = backend.host.inputs(sim.state, control, sim.control_spec)
        if backend.name == "mjx":
            import jax

            device = jax.device_put({k: v.astype(np.float32) for k, v in inputs.items()}, backend.device)
            jax.block_until_ready(device)
            backend.host.output(sim.state, device["time"], device["qpos"], device["qvel"], device["act"])
        else:
            import warp as wp

            d = backend._d
            for name in ("qpos", "qvel"):
                getattr(d, name).assign(wp.array(inputs[name].astype(np.float32), dtype=float, device=backend._device))
            backend.host.output(sim.state, d.time, d.qpos, d.qvel, d.act)
    return (time.perf_counter() - start) / repeats


def crossover(rows: list[dict], task: str, backend: str) -> int | None:
    """Smallest batch size at which `backend` beats CPU MuJoCo on `task`, if any."""
    cpu = {r["num_envs"]: r["env_steps_per_s"] for r in rows if r["task"] == task and r["backend"] == "cpu"}
    for r in sorted((r for r in rows if r["task"] == task and r["backend"] == backend), key=lambda r: r["num_envs"]):
        if r["num_envs"] in cpu and r["env_steps_per_s"] > cpu[r["num_envs"]]:
            return r["num_envs"]
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["cheetah-run", "arm-reach"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 1024, 4096], help="CPU MuJoCo batch sizes")
    parser.add_argument("--mjx-sizes", type=int, nargs="+", default=[64, 256, 1024, 4096])
    parser.add_argument("--warp-sizes", type=int, nargs="+", default=[64, 256, 1024, 4096])
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per measurement (at least 2 steps)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    status = backend_status()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"load average at start {os.getloadavg()[0]:.1f}")
    for name, (ok, reason) in status.items():
        print(f"  {name}: {'available' if ok else 'not available'} -- {reason}")
    sizes = {"cpu": args.sizes, "warp": args.warp_sizes, "mjx": args.mjx_sizes}  # slowest to compile last
    rows = []
    started = time.perf_counter()
    for backend, batch_sizes in sizes.items():
        if not status[backend][0]:
            continue
        for task in args.tasks:
            for num_envs in batch_sizes:
                row = {"task": task, "backend": backend, "num_envs": num_envs,
                       **measure(task, backend, num_envs, args.seconds), "load": os.getloadavg()[0]}
                rows.append(row)
                print(f"{task:12s} {backend:5s} {num_envs:5d} envs: {row['env_steps_per_s']:10,.0f} env-steps/s  "
                      f"first step {row['first_step_s']:6.1f} s  host copy {row['host_copy_share']:5.1%}  "
                      f"load {row['load']:.1f}", flush=True)
    for task in args.tasks:
        for backend in ("mjx", "warp"):
            found = crossover(rows, task, backend)
            print(f"crossover {task} {backend}: " + (f"{found} envs" if found else "none in the measured sizes"))
    print(f"total {time.perf_counter() - started:.0f} s; load average at end {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps({"status": status, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
