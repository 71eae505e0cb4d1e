"""Platform overhead: how many no-op jobs per second the durable queue claims and completes, on SQLite and on
PostgreSQL (a throwaway local cluster), with N worker processes; and the cost of the process-per-attempt path
(`Worker`: spawn `python -m embodia.platform.runjob`, run the `noop` stage, register its output).

Usage: python benchmarks/platform_overhead.py [--jobs 2000] [--workers 4] [--process-jobs 16]
Target (issue 12): >= 200 jobs/s claim+complete with 4 workers on PostgreSQL. The load average is printed with
every figure: on a shared machine the figures move with it.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from pathlib import Path

from embodia.platform import queue
from embodia.platform.pgcluster import throwaway_postgres
from embodia.platform.store import open_store
from embodia.platform.worker import Worker


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def _drain(home: str, url: str, name: str, start, counts) -> None:
    """One queue worker: claim and complete jobs until none is left (no stage runs: the queue's own cost)."""
    store = open_store(home, url, migrate=False)
    start.wait()
    done = 0
    while (claim := queue.claim(store, name, lease_s=60)) is not None:
        queue.finish(store, claim.job.id, name, queue.Outcome("succeeded"))
        done += 1
    counts.put(done)
    store.close()


def queue_throughput(home: Path, url: str, jobs: int, workers: int) -> float:
    """jobs/s for `workers` processes draining `jobs` queued no-op jobs."""
    store = open_store(home, url)
    for _ in range(jobs):
        queue.submit(store, "noop")
    store.close()
    context = multiprocessing.get_context("spawn")
    start, counts = context.Event(), context.Queue()
    processes = [context.Process(target=_drain, args=(str(home), url, f"bench-{i}", start, counts))
                 for i in range(workers)]
    for process in processes:
        process.start()
    time.sleep(2.0)  # let every process import and connect before the clock starts
    began = time.perf_counter()
    start.set()
    for process in processes:
        process.join()
    elapsed = time.perf_counter() - began
    done = sum(counts.get() for _ in processes)
    assert done == jobs, f"{done} of {jobs} jobs completed"
    return jobs / elapsed


def _run_workers(home: str, url: str, name: str) -> None:
    store = open_store(home, url, migrate=False)
    Worker(store, name, lease_s=30, poll_s=0.1).run(until_idle=True)
    store.close()


def process_path(home: Path, url: str, jobs: int, workers: int) -> tuple[float, float]:
    """(jobs/s, seconds per job per worker) for no-op jobs run the real way: a process per attempt, output
    registered in the artifact store."""
    store = open_store(home, url)
    for index in range(jobs):
        queue.submit(store, "noop", {"index": index})  # distinct configs, distinct manifests
    store.close()
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_run_workers, args=(str(home), url, f"proc-{i}")) for i in range(workers)]
    began = time.perf_counter()
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    elapsed = time.perf_counter() - began
    store = open_store(home, url, migrate=False)
    succeeded = len(queue.list_jobs(store, status="succeeded", limit=None))
    store.close()
    assert succeeded == jobs, f"{succeeded} of {jobs} jobs succeeded"
    return jobs / elapsed, elapsed * workers / jobs


def measure(backend: str, url_for, args) -> list[str]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="embodia-bench-") as tmp:
        url = url_for(Path(tmp), 'queue')
        load_before = _load()
        rate = queue_throughput(Path(tmp) / "ws-queue", url, args.jobs, args.workers)
        rows.append(f"| {backend} | queue claim+complete | {args.workers} processes | {args.jobs} | "
                    f"{rate:,.0f} jobs/s | {load_before} -> {_load()} |")
        print(rows[-1], flush=True)
        url = url_for(Path(tmp), 'proc')
        load_before = _load()
        rate, per_job = process_path(Path(tmp) / "ws-proc", url, args.process_jobs, args.workers)
        rows.append(f"| {backend} | worker, process per attempt, output registered | {args.workers} workers | "
                    f"{args.process_jobs} | {rate:,.2f} jobs/s ({per_job:.2f} s/job/worker) | "
                    f"{load_before} -> {_load()} |")
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--process-jobs", type=int, default=16)
    args = parser.parse_args()
    print(f"cpus {os.cpu_count()}, load average (1/5/15 min) {_load()}")
    print("| database | path | workers | jobs | throughput | load average before -> after |")
    print("|---|---|---|---|---|---|")
    measure("SQLite (WAL)", lambda tmp, name: f"sqlite:///{tmp / name}.db", args)
    with throwaway_postgres() as cluster:
        measure("PostgreSQL 15 (local)", lambda tmp, name: cluster.new_database(), args)


if __name__ == "__main__":
    main()
