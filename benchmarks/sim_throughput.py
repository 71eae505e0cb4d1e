"""Batched simulation throughput: embodia's BatchEnv vs the raw mujoco.rollout ceiling, EnvPool and Gymnasium.

For each model (cheetah-run = HalfCheetah-v5, ant-walk = Ant-v5 without contact forces) and batch size, every
contender runs for `--seconds`, in the order ceiling, embodia, EnvPool sync, EnvPool async, Gymnasium sync,
Gymnasium async, for `--rounds` rounds (A, B, C, A, B, C ...); each ratio is the median of the per-round ratios,
so a load change hits all contenders alike. All use `--nthread` threads (EnvPool `num_threads`; Gymnasium's sync
env is one thread, its async env one process per env). EnvPool runs in its own virtualenv (`--envpool-python`,
default /work/main/.envpool-venv or $EMBODIA_ENVPOOL_PYTHON) as a subprocess driven line by line, still interleaved;
the output says so when it is absent. Also rendering frames/s at 128x128 and 640x480.

Usage: python benchmarks/sim_throughput.py [--batches 64 256 1024] [--seconds 1] [--rounds 3]
       [--markdown benchmarks/results/sim.md] [--json benchmarks/results/sim.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import mujoco
import numpy as np
from _ceiling import RawRollout, interleave, load_line, median_ratio, steps_per_second

from embodia.tasks import BatchEnv

HERE = Path(__file__).resolve().parent
# embodia task -> (Gymnasium / EnvPool id, Gymnasium kwargs, EnvPool kwargs) of the same model and observation
MODELS = {
    "cheetah-run": ("HalfCheetah-v5", {}, {}),
    "ant-walk": ("Ant-v5", {"include_cfrc_ext_in_observation": False},
                 {"use_contact_force": False, "contact_cost_weight": 0.0}),
}
GYM_ASYNC_ENVS = 8  # one process per env: more than this only adds processes on a 2-core machine
TARGET_CEILING, TARGET_ENVPOOL = 0.9, 1.1


class EnvPoolWorker:
    """`_envpool_worker.py` in EnvPool's virtualenv: asked for one timed measurement at a time."""

    def __init__(self, python: str) -> None:
        self.process = subprocess.Popen([python, str(HERE / "_envpool_worker.py")], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)
        self.version = json.loads(self.process.stdout.readline())["envpool"]

    def rate(self, env_id: str, num_envs: int, mode: str, threads: int, seconds: float, kwargs: dict) -> float:
        request = {"env_id": env_id, "num_envs": num_envs, "mode": mode, "threads": threads, "seconds": seconds,
                   "kwargs": kwargs}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        reply = json.loads(self.process.stdout.readline())
        if "error" in reply:
            raise RuntimeError(f"envpool {env_id} {mode} {num_envs}: {reply['error']}")
        return reply["rate"]

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


def start_envpool(python: str) -> tuple[EnvPoolWorker | None, str]:
    """The EnvPool worker, or None and the reason it is absent."""
    if not Path(python).exists():
        return None, f"EnvPool absent: no interpreter at {python} (make one: python3 -m venv <dir> && <dir>/bin/pip install envpool)"
    try:
        worker = EnvPoolWorker(python)
    except Exception as error:  # noqa: BLE001  (reported as absent, the rest still runs)
        return None, f"EnvPool absent: {python} could not start the worker ({error})"
    return worker, f"EnvPool {worker.version} (own virtualenv {python})"


def embodia_stepper(task: str, num_envs: int, nthread: int):
    """BatchEnv.step with uniform random actions: physics + observation + reward + termination + autoreset."""
    env = BatchEnv(task, num_envs=num_envs, nthread=nthread)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    shape = (num_envs, env.action_dim)
    return lambda: env.step(rng.uniform(-1, 1, shape)), env.close


def gymnasium_stepper(env_id: str, kwargs: dict, num_envs: int, mode: str):
    """Gymnasium's own vector env (`make_vec`, sync or async), random actions from its action space."""
    envs = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode=mode, **kwargs)
    envs.reset(seed=0)
    envs.action_space.seed(0)
    return lambda: envs.step(envs.action_space.sample()), envs.close


def contenders_for(task: str, num_envs: int, args, envpool: EnvPoolWorker | None) -> tuple[dict, list]:
    """name -> measurement (env-steps/s of one `--seconds` window) for one model and batch size; closers."""
    env_id, gym_kwargs, pool_kwargs = MODELS[task]
    ceiling = RawRollout(task, num_envs, args.nthread)
    ours, close_ours = embodia_stepper(task, num_envs, args.nthread)
    sync, close_sync = gymnasium_stepper(env_id, gym_kwargs, num_envs, "sync")
    async_envs = min(num_envs, GYM_ASYNC_ENVS)
    asynchronous, close_async = gymnasium_stepper(env_id, gym_kwargs, async_envs, "async")
    measures = {
        "ceiling": lambda: steps_per_second(ceiling.step, num_envs, args.seconds),
        "embodia": lambda: steps_per_second(ours, num_envs, args.seconds),
    }
    if envpool is not None:
        for mode in ("sync", "async"):
            measures[f"envpool_{mode}"] = (lambda mode=mode: envpool.rate(env_id, num_envs, mode, args.nthread,
                                                                          args.seconds, pool_kwargs))
    measures["gymnasium_sync"] = lambda: steps_per_second(sync, num_envs, args.seconds)
    measures[f"gymnasium_async{async_envs}"] = lambda: steps_per_second(asynchronous, async_envs, args.seconds)
    return measures, [ceiling.close, close_ours, close_sync, close_async]


def render_fps(width: int, height: int, quality: str, seconds: float) -> float:
    """Frames/s of BatchRenderer over 8 cheetah envs from the `track` camera."""
    from embodia.sim.render import BatchRenderer

    env = BatchEnv("cheetah-run", num_envs=8)
    env.reset(seed=0)
    renderer = BatchRenderer(env.sim, width=width, height=height, quality=quality)
    ids = np.arange(8)
    rate = steps_per_second(lambda: renderer.render(ids, camera="track"), len(ids), seconds)
    renderer.close()
    env.close()
    return rate


def summarize(samples: dict[str, list[float]]) -> dict:
    """Median rates and the paired ratios the targets use."""
    row: dict = {"median_rate": {name: statistics.median(rates) for name, rates in samples.items()},
                 "embodia_over_ceiling": median_ratio(samples["embodia"], samples["ceiling"]),
                 "embodia_over_gymnasium_sync": median_ratio(samples["embodia"], samples["gymnasium_sync"])}
    if "envpool_sync" in samples:
        row["embodia_over_envpool_sync"] = median_ratio(samples["embodia"], samples["envpool_sync"])
        row["embodia_over_envpool_async"] = median_ratio(samples["embodia"], samples["envpool_async"])
    return row


def markdown(results: dict, args, envpool_line: str) -> str:
    """results/sim.md: the setup, one table per model, the targets met or not."""
    setup = (f"{results['load_before']} before, {results['load_after']} after; MuJoCo {mujoco.__version__}, "
             f"Gymnasium {gym.__version__}, {envpool_line}; {args.nthread} threads for every contender.")
    command = (f"Command: `python benchmarks/sim_throughput.py --seconds {args.seconds} --rounds {args.rounds} "
               f"--batches {' '.join(map(str, args.batches))} --markdown benchmarks/results/sim.md`. Contenders "
               "interleaved (ceiling, embodia, EnvPool sync/async, Gymnasium sync/async; "
               f"{args.rounds} rounds of {args.seconds} s each); rates are medians, ratios medians of per-round "
               "ratios. Ceiling: `benchmarks/_ceiling.py` (`mujoco.rollout`, preallocated, checks skipped, no "
               "observation or reward). EnvPool async: batch = half the envs. Gymnasium async: "
               f"{GYM_ASYNC_ENVS} processes (one per env). Random actions everywhere.")
    lines = ["# Batched simulation throughput (issue 11: ceiling, EnvPool, Gymnasium)", "", setup, command, ""]
    for task, rows in results["physics"].items():
        env_id = MODELS[task][0]
        names = list(next(iter(rows.values()))["median_rate"])
        lines += [f"## {task} (= {env_id}{' without contact forces' if task == 'ant-walk' else ''})", "",
                  "| envs | " + " | ".join(names) + " | embodia / ceiling | embodia / EnvPool sync | "
                  "embodia / Gymnasium sync |", "|---:|" + "---:|" * (len(names) + 3)]
        for num_envs, row in rows.items():
            rates = " | ".join(f"{row['median_rate'][name]:,.0f}" for name in names)
            pool = row.get("embodia_over_envpool_sync")
            lines.append(f"| {num_envs} | {rates} | {row['embodia_over_ceiling']:.2f}× | "
                         f"{'n/a' if pool is None else f'{pool:.2f}×'} | {row['embodia_over_gymnasium_sync']:.1f}× |")
        lines.append("")
    lines += verdict_lines(results)
    if results.get("render"):
        lines += ["", "Rendering (`BatchRenderer`, 8 envs of cheetah-run, `track` camera, frames/s):", "",
                  "| size | fast (default) | full |", "|---|---:|---:|"]
        for size in ("128x128", "640x480"):
            lines.append(f"| {size} | {results['render'][f'{size} fast']:,.0f} | {results['render'][f'{size} full']:,.0f} |")
    return "\n".join(lines) + "\n"


def verdict_lines(results: dict) -> list[str]:
    """Targets of issue 11 on cheetah-run: >= 0.9x the ceiling at every batch, >= 1.1x EnvPool sync at 256."""
    cheetah = results["physics"].get("cheetah-run", {})
    ceiling = {n: row["embodia_over_ceiling"] for n, row in cheetah.items()}
    ceiling_met = bool(ceiling) and all(value >= TARGET_CEILING for value in ceiling.values())
    lines = [f"- **embodia ≥ {TARGET_CEILING}× the ceiling** (cheetah-run, every batch): "
             + ", ".join(f"{value:.2f}× at {n}" for n, value in ceiling.items())
             + f" — **{'met' if ceiling_met else 'not met'}**."]
    pool = cheetah.get(256, {}).get("embodia_over_envpool_sync")
    if pool is None:
        lines.append(f"- **embodia ≥ {TARGET_ENVPOOL}× EnvPool sync at 256 envs**: not measured (EnvPool absent).")
    else:
        lines.append(f"- **embodia ≥ {TARGET_ENVPOOL}× EnvPool sync at 256 envs** (cheetah-run): {pool:.2f}× — "
                     f"**{'met' if pool >= TARGET_ENVPOOL else 'not met'}**.")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one measurement window")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per model and batch size")
    parser.add_argument("--nthread", type=int, default=2)
    parser.add_argument("--envpool-python", default=os.environ.get("EMBODIA_ENVPOOL_PYTHON",
                                                                   "/work/main/.envpool-venv/bin/python"))
    parser.add_argument("--skip-render", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the results page here")
    args = parser.parse_args()

    envpool, envpool_line = start_envpool(args.envpool_python)
    print(envpool_line)
    results: dict = {"date": time.strftime("%Y-%m-%d"), "load_before": load_line(), "physics": {}, "render": {}}
    print(results["load_before"])
    for task in args.tasks:
        results["physics"][task] = {}
        for num_envs in args.batches:
            measures, closers = contenders_for(task, num_envs, args, envpool)
            row = summarize(interleave(measures, args.rounds))
            for close in closers:
                close()
            results["physics"][task][num_envs] = row
            rates = ", ".join(f"{name} {rate:,.0f}" for name, rate in row["median_rate"].items())
            print(f"{task} {num_envs:5d} envs: {rates} env-steps/s | embodia/ceiling {row['embodia_over_ceiling']:.2f}"
                  + (f" | embodia/envpool sync {row['embodia_over_envpool_sync']:.2f}" if envpool else "")
                  + f" | {load_line()}", flush=True)
    if envpool is not None:
        envpool.close()
    if not args.skip_render:
        for width, height in [(128, 128), (640, 480)]:
            for quality in ("fast", "full"):
                results["render"][f"{width}x{height} {quality}"] = render_fps(width, height, quality, args.seconds)
    results["load_after"] = load_line()
    print("\n".join(verdict_lines(results)))
    print(results["load_after"])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if args.markdown:
        args.markdown.write_text(markdown(results, args, envpool_line))


if __name__ == "__main__":
    sys.exit(main())
