"""Ray executor overhead: wall time per no-op job when a worker's attempts run as Ray tasks (a local Ray of
`--cpus` CPUs) against local subprocesses, with the same number of worker slots, on one SQLite workspace.

Both paths start `python -m embodia.platform.runjob` per attempt, run the `noop` stage and register its output;
the Ray path adds the placement check (`ray.nodes()`), the task submission and its worker process. Rounds
alternate local, Ray, local, Ray (A,B,A,B) so that both face the same machine load; each round's paired ratio
(Ray / local seconds per job) and the load average are printed and written to benchmarks/results/ray.md.

Usage: python benchmarks/ray_executor.py [--jobs 6] [--slots 2] [--rounds 3] [--cpus 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from embodia.core.atomic import atomic_write_text
from embodia.platform import queue
from embodia.platform.ray_executor import RayExecutor
from embodia.platform.store import open_store
from embodia.platform.worker import Executor, LocalExecutor, Worker, run_slots

RESULTS = Path(__file__).resolve().parent / "results" / "ray.md"


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def seconds_per_job(store, executor: Executor, jobs: int, slots: int, tag: str) -> float:
    """Queue `jobs` distinct no-op jobs, drain them with `slots` workers on `executor`; wall seconds per job."""
    for index in range(jobs):
        queue.submit(store, "noop", {"kind": f"{tag}-{index}"})
    workers = [Worker(store, f"{tag}-{slot}", lease_s=30, poll_s=0.05, executor=executor) for slot in range(slots)]
    began = time.perf_counter()
    ran = run_slots(workers, until_idle=True)
    elapsed = time.perf_counter() - began
    assert ran == jobs, f"{ran} of {jobs} jobs ran"
    failed = [job for job in queue.list_jobs(store, limit=jobs) if job.status != "succeeded"]
    assert not failed, f"{len(failed)} jobs did not succeed: {failed[0].error}"
    return elapsed / jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=6)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    store = open_store(home, f"sqlite:///{home / 'embodia.db'}")
    ray_executor = RayExecutor(num_cpus=args.cpus)
    rows = []
    try:
        seconds_per_job(store, ray_executor, args.slots, args.slots, "warm")  # Ray's first workers start here
        for index in range(args.rounds):
            load_before = _load()
            local_s = seconds_per_job(store, LocalExecutor(), args.jobs, args.slots, f"local{index}")
            ray_s = seconds_per_job(store, ray_executor, args.jobs, args.slots, f"ray{index}")
            rows.append((index + 1, local_s, ray_s, ray_s / local_s, load_before, _load()))
            print(f"round {index + 1}: local {local_s:.2f} s/job, ray {ray_s:.2f} s/job, ratio {ray_s / local_s:.2f}"
                  f"  load {load_before} -> {_load()}", flush=True)
    finally:
        ray_executor.close()
        store.close()
    write_results(rows, args)


def write_results(rows: list[tuple], args: argparse.Namespace) -> None:
    """benchmarks/results/ray.md: one row per round and the median paired ratio."""
    median = statistics.median(row[3] for row in rows)
    method = (f"Command: `python benchmarks/ray_executor.py --jobs {args.jobs} --slots {args.slots} "
              f"--rounds {args.rounds} --cpus {args.cpus}` on the project's shared 2-core VM, "
              f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Each round drains {args.jobs} `noop` jobs "
              f"with {args.slots} worker slots, first with local subprocesses, then as Ray tasks on a local Ray of "
              f"{args.cpus} CPUs (A,B per round; one warm-up Ray round before). Both paths start an attempt "
              "process per job and register its output; the Ray path adds the live-node check, the task "
              "submission and its worker.")
    lines = ["# Ray executor: per-job overhead against local subprocesses", "", method, "",
             "| round | local s/job | Ray s/job | paired ratio Ray/local | load average before -> after |",
             "|---|---|---|---|---|"]
    lines += [f"| {r[0]} | {r[1]:.2f} | {r[2]:.2f} | {r[3]:.2f} | {r[4]} -> {r[5]} |" for r in rows]
    lines += ["", f"Median paired ratio: **{median:.2f}** (no target; the figures move with the machine's load)."]
    atomic_write_text(RESULTS, "\n".join(lines) + "\n")
    print(f"median ratio {median:.2f}; wrote {RESULTS}")


if __name__ == "__main__":
    main()
