"""Platform overhead: how many no-op jobs per second the durable queue claims and completes, on SQLite and on
PostgreSQL (a throwaway local cluster), with N worker processes; and the cost of the process-per-attempt path
(`Worker`: spawn `python -m embodia.platform.runjob`, run the `noop` stage, register its output).
Section `pipeline`: the quickstart pipeline through the platform (`embodia run`: queue jobs, local workers,
artifact store, registry, gate, register) against the same stages called directly one after the other in one
process, on SQLite; both must produce identical artifacts (content hashes are compared).

Usage: python benchmarks/platform_overhead.py [--section queue|pipeline|all] [--jobs 2000] [--workers 4]
       [--process-jobs 16] [--pipeline quickstart] [--repeats 2]
Targets (issue 12): >= 200 jobs/s claim+complete with 4 workers on PostgreSQL; <= 5 % overhead on the
quickstart pipeline. The load average is printed with every figure: on a shared machine the figures move with it.
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
    done, cpu_before = 0, time.process_time()
    while (claim := queue.claim(store, name, lease_s=60)) is not None:
        queue.finish(store, claim.job.id, name, queue.Outcome("succeeded"))
        done += 1
    counts.put((done, time.process_time() - cpu_before))
    store.close()


def _server_cpu_s(pid_file: Path | None) -> float:
    """CPU seconds the PostgreSQL server used so far: the postmaster plus its exited children (the sessions'
    backends, reaped when the clients disconnect); 0 for SQLite (in-process)."""
    if pid_file is None:
        return 0.0
    pid = pid_file.read_text().split()[0]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def queue_throughput(home: Path, url: str, jobs: int, workers: int,
                     pid_file: Path | None = None) -> tuple[float, float, float]:
    """(jobs/s, client CPU ms per job, database server CPU ms per job) for `workers` processes draining `jobs`
    queued no-op jobs."""
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
    server_before = _server_cpu_s(pid_file)
    began = time.perf_counter()
    start.set()
    results = [counts.get() for _ in processes]
    elapsed = time.perf_counter() - began
    for process in processes:
        process.join()
    time.sleep(0.5)  # the backends of the closed sessions are reaped
    server_ms = (_server_cpu_s(pid_file) - server_before) * 1000 / jobs
    done = sum(count for count, _ in results)
    assert done == jobs, f"{done} of {jobs} jobs completed"
    return jobs / elapsed, sum(cpu for _, cpu in results) * 1000 / jobs, server_ms


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


def measure(backend: str, url_for, args, pid_file: Path | None = None) -> list[str]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="embodia-bench-") as tmp:
        url = url_for(Path(tmp), 'queue')
        load_before = _load()
        rate, client_ms, server_ms = queue_throughput(Path(tmp) / "ws-queue", url, args.jobs, args.workers, pid_file)
        cpu_ms = client_ms + server_ms
        rows.append(f"| {backend} | queue claim+complete | {args.workers} processes | {args.jobs} | "
                    f"{rate:,.0f} jobs/s | {client_ms:.2f} + {server_ms:.2f} ms | "
                    f"{1000 * (os.cpu_count() or 1) / cpu_ms:,.0f} jobs/s | {load_before} -> {_load()} |")
        print(rows[-1], flush=True)
        url = url_for(Path(tmp), 'proc')
        load_before = _load()
        rate, per_job = process_path(Path(tmp) / "ws-proc", url, args.process_jobs, args.workers)
        rows.append(f"| {backend} | worker, process per attempt, output registered | {args.workers} workers | "
                    f"{args.process_jobs} | {rate:,.2f} jobs/s ({per_job:.2f} s/job/worker) | | | "
                    f"{load_before} -> {_load()} |")
        print(rows[-1], flush=True)
    return rows


# ------------------------------------------------------------------------------------------------ pipeline


def _stage_steps(pipeline):
    """The pipeline without its deploy steps (serving is not a stage: timed separately by `embodia run`)."""
    from embodia.platform.pipeline import Pipeline

    kept = [name for name in pipeline.order if pipeline.steps[name].type != "deploy"]
    return Pipeline(pipeline.name, {n: pipeline.steps[n] for n in kept}, kept, pipeline.source, pipeline.project)


def run_direct(pipeline, out: Path) -> tuple[float, dict[str, float], dict[str, str]]:
    """Call each stage's run() in order in this process, the way a notebook would; (total s, per step s, hashes)."""
    from embodia.platform.stages import binding

    outputs: dict[str, Path] = {}
    seconds: dict[str, float] = {}
    hashes: dict[str, str] = {}
    began = time.perf_counter()
    for name in pipeline.order:
        step = pipeline.steps[name]
        if step.type not in ("generate", "augment", "train", "export", "evaluate"):
            continue  # gate/register/deploy are registry operations: the platform's part
        inputs = {key: _stage_input(outputs[source]) for key, source in step.step_inputs.items()}
        start = time.perf_counter()
        manifest = binding(step.type).runner()(step.effective_config(), out / name, inputs=inputs)
        seconds[name] = time.perf_counter() - start
        outputs[name], hashes[name] = out / name, manifest.content_sha256
    return time.perf_counter() - began, seconds, hashes


def _stage_input(path: Path) -> Path:
    """As the platform passes them: a model output is its ONNX file, anything else its directory."""
    from embodia.core.manifest import Manifest

    return next(path.glob("*.onnx")) if Manifest.read(path).kind == "model" else path


def run_platform(pipeline, home: Path) -> tuple[float, dict[str, float], dict[str, str], dict[str, float]]:
    """The same steps through `PipelineRunner` on a fresh SQLite workspace; (total s, per step s, hashes,
    per step seconds the stage itself ran, from its manifest's start and end)."""
    from embodia.platform.runner import PipelineRunner

    store = open_store(home, f"sqlite:///{home / 'embodia.db'}")
    began = time.perf_counter()
    results = PipelineRunner(pipeline, store).run()
    total = time.perf_counter() - began
    store.close()
    failed = {name: r.message for name, r in results.items() if r.status not in ("ran",)}
    assert not failed, f"steps did not run: {failed}"
    return (total, {name: r.seconds for name, r in results.items()},
            {name: r.output.sha256 for name, r in results.items()},
            {name: _stage_seconds(r.output.path) for name, r in results.items()})


def _stage_seconds(path: Path) -> float:
    """How long the stage ran by its own manifest (1 s resolution)."""
    from datetime import datetime

    from embodia.core.manifest import Manifest

    manifest = Manifest.read(path)
    span = datetime.fromisoformat(manifest.finished_at) - datetime.fromisoformat(manifest.started_at)
    return span.total_seconds()


def pipeline_overhead(args) -> None:
    """Print the platform-vs-direct table for one built-in pipeline: `--repeats` pairs, order alternating
    (direct, platform, platform, direct, ...) so a load that changes over time hits both sides alike."""
    from embodia.platform.pipeline import load_pipeline

    source = Path(__file__).resolve().parents[1] / "embodia" / "platform" / "pipelines" / f"{args.pipeline}.yaml"
    pipeline = _stage_steps(load_pipeline(source))
    direct_totals, platform_totals = [], []
    print(f"\npipeline {pipeline.name} (deploy step left out)")
    print("| run | step | direct s | platform s | stage s inside the platform job (manifest) | identical artifact |")
    print("|---|---|---|---|---|---|")
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="embodia-bench-") as tmp:
            load_before = _load()
            sides = {}
            for side in (("direct", "platform") if repeat % 2 == 0 else ("platform", "direct")):
                sides[side] = (run_direct(pipeline, Path(tmp) / "direct") if side == "direct"
                               else run_platform(pipeline, Path(tmp) / "ws"))
            load_after = _load()
        (direct_s, direct_steps, direct_hashes), (platform_s, platform_steps, platform_hashes, inside) = \
            sides["direct"], sides["platform"]
        direct_totals.append(direct_s)
        platform_totals.append(platform_s)
        for name in pipeline.order:
            direct = f"{direct_steps[name]:.1f}" if name in direct_steps else "-"
            same = platform_hashes[name] == direct_hashes[name] if name in direct_hashes else "-"
            print(f"| {repeat + 1} | {name} | {direct} | {platform_steps[name]:.1f} | {inside[name]:.0f} | {same} |")
        print(f"| {repeat + 1} | **total** | **{direct_s:.1f}** | **{platform_s:.1f}** | "
              f"load {load_before} -> {load_after} | {(platform_s - direct_s) / direct_s:+.1%} |", flush=True)
    overhead = (sum(platform_totals) - sum(direct_totals)) / sum(direct_totals)
    print(f"\noverall: direct {sum(direct_totals):.1f} s, platform {sum(platform_totals):.1f} s over "
          f"{args.repeats} runs each: overhead {overhead:+.1%} (target <= 5 %)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--section", choices=("queue", "pipeline", "all"), default="all")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--process-jobs", type=int, default=16)
    parser.add_argument("--pipeline", default="quickstart", help="built-in pipeline for the pipeline section")
    parser.add_argument("--repeats", type=int, default=2, help="direct/platform pairs of the pipeline section")
    args = parser.parse_args()
    print(f"cpus {os.cpu_count()}, load average (1/5/15 min) {_load()}")
    if args.section in ("queue", "all"):
        print("| database | path | workers | jobs | throughput (measured) | CPU per job: client + server | "
              "CPU-bound capacity of this machine's cores | load average before -> after |")
        print("|---|---|---|---|---|---|---|---|")
        measure("SQLite (WAL)", lambda tmp, name: f"sqlite:///{tmp / name}.db", args)
        with throwaway_postgres() as cluster:
            measure("PostgreSQL 15 (local)", lambda tmp, name: cluster.new_database(), args,
                    cluster.data / "postmaster.pid")
    if args.section in ("pipeline", "all"):
        pipeline_overhead(args)


if __name__ == "__main__":
    main()
