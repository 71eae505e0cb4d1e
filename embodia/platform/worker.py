"""Workers: claim jobs from the queue and run each attempt in its own process, heartbeating its lease.

Public API:
    Worker(store, name=None, *, lease_s=30, poll_s=1, types=None, grace_s=10)
        .run_one() -> JobInfo | None      claim and run one job (None when the queue had nothing runnable)
        .run(*, max_jobs=None, until_idle=False, stop=None) -> int   loop; `stop` is a threading.Event
    thread_env(cpus) -> dict               OMP/MKL/OpenBLAS/... thread counts for a job's CPU allocation
The attempt process dies with its worker (it arms PR_SET_PDEATHSIG on Linux), so a worker killed with SIGKILL leaves
nothing running: its lease expires and another worker takes the job and resumes from its staging directory.
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

from sqlalchemy.exc import OperationalError

from embodia.platform import queue
from embodia.platform.runjob import EXIT_CANCELLED, EXIT_USER, WORKER_PID_ENV, result_path
from embodia.platform.store import DB_URL_ENV, HOME_ENV, Store

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                   "VECLIB_MAXIMUM_THREADS", "EMBODIA_NUM_THREADS")
DB_RETRY_S = 5.0


def thread_env(cpus: float) -> dict[str, str]:
    """Thread-count variables for a job allowed `cpus` CPUs (at least one thread)."""
    threads = str(max(1, math.floor(cpus)))
    return {name: threads for name in THREAD_ENV_VARS}


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Worker:
    """Runs queued jobs one at a time, each attempt as `python -m embodia.platform.runjob`."""

    def __init__(self, store: Store, name: str | None = None, *, lease_s: float = 30.0, poll_s: float = 1.0,
                 types: list[str] | None = None, grace_s: float = 10.0) -> None:
        self.store = store
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.lease_s, self.poll_s, self.types, self.grace_s = lease_s, poll_s, types, grace_s
        self.heartbeat_s = max(0.05, lease_s / 3)

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

    def _spawn(self, claim: queue.Claim, log) -> subprocess.Popen:
        env = {**os.environ, **thread_env(claim.job.cpus), HOME_ENV: str(self.store.home), DB_URL_ENV: self.store.url,
               WORKER_PID_ENV: str(os.getpid()), "EMBODIA_JOB_CPUS": f"{claim.job.cpus:g}"}
        command = [sys.executable, "-m", "embodia.platform.runjob", str(claim.job.id), str(claim.attempt), self.name]
        # its own session: a Ctrl-C meant for the worker reaches the attempt only through the worker (see _attempt);
        # no preexec_fn (workers also run in threads): the attempt arms its own death signal (runjob.main)
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)

    def _attempt(self, claim: queue.Claim) -> queue.Outcome | None:
        """Run the attempt process while heartbeating; its outcome, or None when the lease was lost."""
        claim.log_path.parent.mkdir(parents=True, exist_ok=True)
        cpu_before = _children_cpu_s()
        cancel_seen: float | None = None
        with open(claim.log_path, "ab") as log:
            log.write(f"== job {claim.job.id} ({claim.job.type}) attempt {claim.attempt} on {self.name}\n".encode())
            log.flush()
            process = self._spawn(claim, log)
            while True:
                try:
                    code = process.wait(timeout=self.heartbeat_s)
                    break
                except subprocess.TimeoutExpired:
                    state = self._heartbeat(claim.job.id)
                except KeyboardInterrupt:  # the worker is stopped: the stage keeps its partial work, the job goes back
                    _stop(process, self.grace_s)
                    queue.release(self.store, claim.job.id, self.name, f"worker {self.name} was stopped (Ctrl-C)")
                    raise
                if state == "lost":
                    process.kill()
                    process.wait()
                    return None
                if state == "cancel":
                    cancel_seen = cancel_seen or time.monotonic()
                    if time.monotonic() - cancel_seen > self.grace_s:
                        _stop(process, 5.0)  # the stage did not stop at a safe point in time
        return self._outcome(claim, code, _children_cpu_s() - cpu_before, cancel_seen is not None)

    def _heartbeat(self, job_id: int) -> str:
        """Renew the lease; a database hiccup is not a lost lease (the next beat tries again)."""
        try:
            return queue.heartbeat(self.store, job_id, self.name, lease_s=self.lease_s)
        except OperationalError:
            return "ok"

    def _outcome(self, claim: queue.Claim, code: int, cpu_s: float, cancel_asked: bool) -> queue.Outcome:
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
        error = result.get("error") or f"attempt process exited with code {code}; see {claim.log_path}"
        return queue.Outcome("failed", "internal", error, code, cpu_s)


def _stop(process: subprocess.Popen, grace_s: float) -> None:
    """SIGINT (a stage records itself cancelled on Ctrl-C), then SIGKILL after `grace_s`."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
