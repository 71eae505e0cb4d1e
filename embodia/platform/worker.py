"""Workers: claim jobs from the queue and run each attempt in its own process, heartbeating its lease.

Public API:
    Worker(store, name=None, *, lease_s=30, poll_s=1, types=None, grace_s=10, executor=None)
        .run_one() -> JobInfo | None      claim and run one job (None when the queue had nothing runnable)
        .run(*, max_jobs=None, until_idle=False, stop=None) -> int   loop; `stop` is a threading.Event
    run_slots(workers, *, max_jobs=None, until_idle=False) -> int   several workers side by side (threads);
                                           Ctrl-C hands each one's running job back
    thread_env(cpus) -> dict               OMP/MKL/OpenBLAS/... thread counts for a job's CPU allocation
    LocalExecutor()                        runs an attempt as a subprocess here (the default)
Claiming, heartbeats, cancellation, retries and outcomes are the worker's; *where* an attempt process runs is its
executor's (here, or on a Ray node: `embodia.platform.ray_executor`; `executors.make_executor` picks one). The attempt process dies with whoever started
it (it arms PR_SET_PDEATHSIG on Linux), so a worker killed with SIGKILL leaves nothing running: its lease expires and
another worker takes the job and resumes from its staging directory.
"""

from __future__ import annotations

import json
import math
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from typing import IO, Protocol

from sqlalchemy.exc import OperationalError

from embodia.platform import queue
from embodia.platform.pipeline import default_parallelism
from embodia.platform.runjob import EXIT_CANCELLED, EXIT_USER, WORKER_PID_ENV, result_path
from embodia.platform.store import DB_URL_ENV, HOME_ENV, Store

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                   "VECLIB_MAXIMUM_THREADS", "EMBODIA_NUM_THREADS")
DB_RETRY_S = 5.0


def thread_env(cpus: float) -> dict[str, str]:
    """Thread-count variables for a job allowed `cpus` CPUs (at least one thread)."""
    threads = str(max(1, math.floor(cpus)))
    return {name: threads for name in THREAD_ENV_VARS}


def children_cpu_s() -> float:
    """CPU seconds of this process's ended, waited-for children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def attempt_command(job_id: int, attempt: int, worker: str) -> list[str]:
    """The command line of an attempt process (`embodia.platform.runjob`) with this machine's Python."""
    return [sys.executable, "-m", "embodia.platform.runjob", str(job_id), str(attempt), worker]


def attempt_env(store: Store, claim: queue.Claim) -> dict[str, str]:
    """What an attempt process needs beyond its node's environment: the workspace and its CPU allocation."""
    return {**thread_env(claim.job.cpus), HOME_ENV: str(store.home), DB_URL_ENV: store.url,
            "EMBODIA_JOB_CPUS": f"{claim.job.cpus:g}"}


class PlacementRefused(Exception):
    """An executor cannot run this job anywhere now (e.g. no alive node of its region); the reason says why."""


class RunningAttempt(Protocol):
    """An attempt process started by an executor."""

    def wait(self, timeout_s: float) -> int | None:
        """Its exit code once it ended, None while it still runs after `timeout_s` (PlacementRefused when it can
        no longer run anywhere: it was stopped)."""

    def interrupt(self, grace_s: float) -> None:
        """Ask it to stop at a safe point (it records itself cancelled); kill it after `grace_s`."""

    def kill(self) -> None:
        """Stop it now and wait until it is gone."""

    def cpu_seconds(self) -> float:
        """CPU time it used (once it ended)."""

    def failure(self) -> str | None:
        """Why it ended without a result of its own (its node died, ...), else None."""


class Executor(Protocol):
    """Where a worker's attempts run: `start` one attempt process for a claimed job, writing to `log`."""

    name: str

    def start(self, claim: queue.Claim, env: dict[str, str], log: IO[bytes], worker: str) -> RunningAttempt:
        """Start the attempt (raises PlacementRefused when it cannot run anywhere now)."""

    def capacity(self) -> tuple[float, float]:
        """(CPUs in all, the most CPUs one job can get) of what this executor runs on."""

    def close(self) -> None:
        """Release what the executor holds (a connection to a cluster)."""


class LocalProcess:
    """An attempt process on this machine."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process
        self._cpu_before = children_cpu_s()

    def wait(self, timeout_s: float) -> int | None:
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def interrupt(self, grace_s: float) -> None:
        stop_process(self.process, grace_s)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def cpu_seconds(self) -> float:
        return children_cpu_s() - self._cpu_before

    def failure(self) -> str | None:
        return None


class LocalExecutor:
    """Runs each attempt as `python -m embodia.platform.runjob` on this machine."""

    name = "local"

    def start(self, claim: queue.Claim, env: dict[str, str], log: IO[bytes], worker: str) -> LocalProcess:
        env = {**os.environ, **env, WORKER_PID_ENV: str(os.getpid())}
        # its own session: a Ctrl-C meant for the worker reaches the attempt only through the worker (see _attempt);
        # no preexec_fn (workers also run in threads): the attempt arms its own death signal (runjob.main)
        command = attempt_command(claim.job.id, claim.attempt, worker)
        return LocalProcess(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, env=env, start_new_session=True))

    def capacity(self) -> tuple[float, float]:
        cores = float(default_parallelism())
        return cores, cores

    def close(self) -> None:
        return None


class Worker:
    """Runs queued jobs one at a time, each attempt as `python -m embodia.platform.runjob` started by its executor
    (a subprocess here by default, or a Ray task on a cluster node)."""

    def __init__(self, store: Store, name: str | None = None, *, lease_s: float = 30.0, poll_s: float = 1.0,
                 types: list[str] | None = None, grace_s: float = 10.0, executor: Executor | None = None) -> None:
        self.store = store
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.lease_s, self.poll_s, self.types, self.grace_s = lease_s, poll_s, types, grace_s
        self.heartbeat_s = max(0.05, lease_s / 3)
        self.executor: Executor = executor or LocalExecutor()
        self.abort = threading.Event()

    def run(self, *, max_jobs: int | None = None, until_idle: bool = False,
            stop: threading.Event | None = None) -> int:
        """Run jobs until `max_jobs` ran, the queue is empty (`until_idle`) or `stop` is set; returns jobs run."""
        ran = 0
        while (max_jobs is None or ran < max_jobs) and not (stop is not None and stop.is_set()):
            try:
                job = self.run_one()
            except OperationalError as error:  # the database is unreachable for a moment: the leases say who owns what
                print(f"worker {self.name}: database error, retrying in {DB_RETRY_S:g} s: {error.orig}",
                      file=sys.stderr, flush=True)
                time.sleep(DB_RETRY_S)
                continue
            if job is not None:
                ran += 1
            elif until_idle:
                break
            else:
                time.sleep(self.poll_s)
        return ran

    def run_one(self) -> queue.JobInfo | None:
        """Claim one job and run its attempt to the end; the job as it ended (None if nothing was runnable)."""
        claim = queue.claim(self.store, self.name, lease_s=self.lease_s, types=self.types)
        if claim is None:
            return None
        outcome = self._attempt(claim)
        if outcome is None:  # the lease went to someone else; they record the job's fate
            return queue.get_job(self.store, claim.job.id)
        return queue.finish(self.store, claim.job.id, self.name, outcome) or queue.get_job(self.store, claim.job.id)

    def _attempt(self, claim: queue.Claim) -> queue.Outcome | None:
        """Run the attempt process while heartbeating; its outcome, or None when the lease was lost."""
        claim.log_path.parent.mkdir(parents=True, exist_ok=True)
        cancel_seen: float | None = None
        with open(claim.log_path, "ab") as log:
            log.write(f"== job {claim.job.id} ({claim.job.type}) attempt {claim.attempt} on {self.name}"
                      f" ({self.executor.name})\n".encode())
            log.flush()
            try:
                process = self.executor.start(claim, attempt_env(self.store, claim), log, self.name)
            except PlacementRefused as refused:
                log.write(f"not started: {refused}\n".encode())
                return queue.Outcome("failed", "placement", str(refused))
            while True:
                try:
                    code = process.wait(self.heartbeat_s)
                    if code is not None:
                        break
                    if self.abort.is_set():  # stopped from another thread (run_slots): as Ctrl-C here
                        raise KeyboardInterrupt
                    state = self._heartbeat(claim.job.id)
                except PlacementRefused as refused:  # its nodes went away (Ray would keep the task pending)
                    log.write(f"stopped: {refused}\n".encode())
                    return queue.Outcome("failed", "placement", str(refused))
                except KeyboardInterrupt:  # the worker is stopped: the stage keeps its partial work, the job goes back
                    process.interrupt(self.grace_s)
                    queue.release(self.store, claim.job.id, self.name, f"worker {self.name} was stopped (Ctrl-C)")
                    raise
                if state == "lost":
                    process.kill()
                    return None
                if state == "cancel":
                    cancel_seen = cancel_seen or time.monotonic()
                    if time.monotonic() - cancel_seen > self.grace_s:
                        process.interrupt(5.0)  # the stage did not stop at a safe point in time
        return self._outcome(claim, code, process.cpu_seconds(), cancel_seen is not None, process.failure())

    def _heartbeat(self, job_id: int) -> str:
        """Renew the lease; a database hiccup is not a lost lease (the next beat tries again)."""
        try:
            return queue.heartbeat(self.store, job_id, self.name, lease_s=self.lease_s)
        except OperationalError:
            return "ok"

    def _outcome(self, claim: queue.Claim, code: int, cpu_s: float, cancel_asked: bool,
                 failure: str | None = None) -> queue.Outcome:
        """Classify how the attempt ended from its result file, else from its exit code."""
        result_file = result_path(claim.log_path)
        result = json.loads(result_file.read_text()) if result_file.is_file() else {}
        status = result.get("status")
        if status == "succeeded":
            return queue.Outcome("succeeded", exit_code=code, cpu_seconds=cpu_s, metrics=result.get("summary") or {})
        if status == "cancelled" or code == EXIT_CANCELLED or (cancel_asked and not result):
            return queue.Outcome("cancelled", "cancelled", result.get("error", "cancelled"), code, cpu_s)
        if result.get("error_type") == "user" or (not result and code == EXIT_USER):
            return queue.Outcome("failed", "user", result.get("error", f"exit code {code}"), code, cpu_s)
        error = result.get("error") or failure or f"attempt process exited with code {code}; see {claim.log_path}"
        return queue.Outcome("failed", "internal", error, code, cpu_s)


def run_slots(workers: list[Worker], *, max_jobs: int | None = None, until_idle: bool = False) -> int:
    """Run `workers` side by side, one thread each (`max_jobs` per worker), until all stop; jobs run in all.
    Ctrl-C stops every one: each hands its running job back to the queue, then KeyboardInterrupt is raised."""
    if len(workers) == 1:  # in this thread: Ctrl-C reaches its attempt loop at once
        return workers[0].run(max_jobs=max_jobs, until_idle=until_idle)
    stop, ran, lock = threading.Event(), [0], threading.Lock()
    # each thread says it has ended through its own event: a Thread.join() that Ctrl-C interrupts can leave the
    # thread marked stopped while it still runs (CPython < 3.13), and the process would exit mid-release
    ended = [threading.Event() for _ in workers]

    def serve(worker: Worker, done: threading.Event) -> None:
        try:
            count = worker.run(max_jobs=max_jobs, until_idle=until_idle, stop=stop)
            with lock:
                ran[0] += count
        except KeyboardInterrupt:  # our abort: its job is already released
            return
        finally:
            done.set()

    threads = [threading.Thread(target=serve, args=(worker, done), name=worker.name, daemon=True)
               for worker, done in zip(workers, ended)]
    for thread in threads:
        thread.start()
    try:
        for done in ended:
            while not done.wait(timeout=0.5):
                pass
    except KeyboardInterrupt:
        stop.set()
        for worker in workers:
            worker.abort.set()
        for done in ended:
            done.wait()
        raise
    return ran[0]


def stop_on_signals() -> None:
    """Ctrl-C (SIGINT) and SIGTERM both stop a worker the graceful way (KeyboardInterrupt: running jobs handed back),
    even when it was started with SIGINT ignored (`nohup ... &` from a script) or by a supervisor that sends
    SIGTERM (systemd, Kubernetes). Main thread only."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def stop_process(process: subprocess.Popen, grace_s: float) -> None:
    """SIGINT (a stage records itself cancelled on Ctrl-C), then SIGKILL after `grace_s`."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
