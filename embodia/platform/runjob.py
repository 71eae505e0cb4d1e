"""One attempt of one job in its own process: `python -m embodia.platform.runjob JOB_ID ATTEMPT WORKER`.

The worker starts it with the workspace in EMBODIA_HOME / EMBODIA_DB_URL and thread counts set from the job's
CPU allocation; stdout and stderr are the attempt's log. It runs the job type's stage into the job's stable
output directory (so a later attempt resumes from the staging directory this one leaves), registers the output
exactly once (by job id, then by content hash) and writes `attempt-N.result.json` for the worker. Exit codes:
0 done, 1 internal error, 2 user error, 3 cancelled, 4 the job is no longer this worker's.
"""

from __future__ import annotations

import ctypes
import inspect
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from embodia.core.atomic import atomic_write_json
from embodia.core.errors import Cancelled, UserError
from embodia.core.manifest import MANIFEST_FILE, Manifest
from embodia.core.stage import staging_dir
from embodia.platform import queue, registry
from embodia.platform.jobtypes import get_job_type
from embodia.platform.store import Store, open_store

EXIT_DONE, EXIT_INTERNAL, EXIT_USER, EXIT_CANCELLED, EXIT_LOST = 0, 1, 2, 3, 4
WORKER_PID_ENV = "EMBODIA_WORKER_PID"
_PR_SET_PDEATHSIG = 1


class JobReporter:
    """The platform's `Reporter`: progress lines into the attempt log, metrics into the database (throttled),
    and `cancelled()` true once the job's cancellation is asked or the worker that started us is gone."""

    def __init__(self, store: Store, job_id: int, attempt: int, *, poll_s: float = 1.0, metrics_every_s: float = 5.0):
        self.store, self.job_id, self.attempt = store, job_id, attempt
        self.poll_s, self.metrics_every_s = poll_s, metrics_every_s
        self.metrics: dict[str, float] = {}
        self._total: float | None = None
        self._last_poll = self._last_line = self._last_metrics = 0.0
        self._cancelled = False
        self._worker_pid = int(os.environ.get(WORKER_PID_ENV, "0") or 0)

    def start(self, stage: str, total: float | None = None, unit: str = "") -> None:
        self._total = total
        self.log(f"start {stage}" + (f": {total:g} {unit}" if total is not None else ""))

    def update(self, done: float, *, message: str = "", metrics: dict[str, float] | None = None) -> None:
        self.metrics.update({k: float(v) for k, v in (metrics or {}).items()})
        now = time.monotonic()
        if now - self._last_line >= 1.0:
            self._last_line = now
            total = f"/{self._total:g}" if self._total is not None else ""
            shown = " ".join(f"{k}={v:.4g}" for k, v in sorted((metrics or {}).items()))
            self.log(f"progress {done:g}{total} {message} {shown}".rstrip())
        if now - self._last_metrics >= self.metrics_every_s:
            self.flush_metrics()

    def log(self, message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    def finish(self) -> None:
        self.flush_metrics()

    def flush_metrics(self) -> None:
        """Write the latest metrics to the attempt's row."""
        self._last_metrics = time.monotonic()
        if self.metrics:
            queue.update_attempt_metrics(self.store, self.job_id, self.attempt, dict(self.metrics))

    def cancelled(self) -> bool:
        if self._cancelled:
            return True
        if self._worker_pid and os.getppid() != self._worker_pid:
            self._cancelled = True  # our worker died: stop at a safe point, the next holder resumes
            return True
        now = time.monotonic()
        if now - self._last_poll >= self.poll_s:
            self._last_poll = now
            self._cancelled = queue.cancel_requested(self.store, self.job_id)
        return self._cancelled


def result_path(log_path: Path) -> Path:
    """Where an attempt leaves its result for the worker, beside its log."""
    return log_path.with_suffix(".result.json")


def job_output_dir(store: Store, job_id: int) -> Path:
    """The stable output directory of a job (its staging sibling survives crashes, for resume)."""
    return store.path("jobs", f"job-{job_id}", "out")


def resolve_inputs(store: Store, inputs: dict[str, str]) -> dict[str, Path]:
    """Registry references (model:..., sha256:..., KIND:sha256:...) to stored paths; other values are paths."""
    resolved = {}
    for name, ref in inputs.items():
        if ref.startswith("model:") or "sha256:" in ref:
            resolved[name] = registry.resolve(store, ref).path
        elif Path(ref).exists():
            resolved[name] = Path(ref)
        else:
            raise UserError(f"job input {name!r}: {ref!r} is neither a registry reference nor an existing path")
    return resolved


def has_partial_work(out: Path) -> bool:
    """True when an earlier attempt left files in the stage's staging directory (what `resume` continues; for a
    training stage, its checkpoints: failover moves a running job to another region only when this holds)."""
    staging = staging_dir(out)
    return staging.is_dir() and any(staging.iterdir())


def _run_stage(store: Store, job: queue.JobInfo, attempt: int) -> Manifest:
    out = job_output_dir(store, job.id)
    if (out / MANIFEST_FILE).is_file():
        print(f"output {out} was published by an earlier attempt; registering it", flush=True)
        return Manifest.read(out)
    stage = get_job_type(job.type)
    kwargs: dict[str, Any] = {"inputs": resolve_inputs(store, job.inputs),
                              "reporter": JobReporter(store, job.id, attempt)}
    if "resume" in inspect.signature(stage).parameters and has_partial_work(out):
        kwargs["resume"] = True
    manifest = stage(dict(job.config), out, **kwargs)
    kwargs["reporter"].flush_metrics()
    return manifest


def run_attempt(store: Store, job_id: int, attempt: int, worker: str) -> tuple[int, dict[str, Any]]:
    """Run the attempt; returns the exit code and the result record for the worker."""
    job = queue.get_job(store, job_id)
    if job.status != "running" or job.lease_owner != worker or job.attempts != attempt:
        return EXIT_LOST, {"status": "lost", "error": f"job {job_id} attempt {attempt} is not held by {worker}"}
    existing = registry.artifact_of_job(store, job_id)
    if existing is None:
        manifest = _run_stage(store, job, attempt)
        if manifest.status != "complete":
            return EXIT_CANCELLED, {"status": "cancelled", "error_type": "cancelled", "error": "stage cancelled"}
        existing = registry.register_artifact(store, job_output_dir(store, job_id), manifest, job_id=job_id,
                                              move=True, tags=[f"job-{job_id}"])
        print(f"registered {existing.ref}", flush=True)
    if not queue.record_output(store, job_id, worker, existing.sha256):
        return EXIT_LOST, {"status": "lost", "error": "lease lost before the output was recorded"}
    return EXIT_DONE, {"status": "succeeded", "output_sha256": existing.sha256,
                       "summary": existing.manifest.get("summary", {})}


def die_with_worker() -> bool:
    """Get SIGKILL when the worker that started us dies (Linux), so no attempt outlives its lease; False when
    that worker is already gone."""
    worker_pid = int(os.environ.get(WORKER_PID_ENV, "0") or 0)
    if sys.platform == "linux":
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    return not worker_pid or os.getppid() == worker_pid


def main(argv: list[str] | None = None) -> int:
    """Entry point of the attempt process."""
    if not die_with_worker():
        return EXIT_LOST
    job_id, attempt, worker = (argv or sys.argv[1:])[:3]
    job_id_int, attempt_int = int(job_id), int(attempt)
    print(f"attempt process {os.getpid()}: {os.environ.get('EMBODIA_JOB_CPUS', '?')} cpus, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}", flush=True)
    store = open_store(migrate=False)
    result_file = result_path(queue.attempt_log(store, job_id_int, attempt_int))
    try:
        code, result = run_attempt(store, job_id_int, attempt_int, worker)
    except UserError as error:
        print(f"error: {error}", flush=True)
        code, result = EXIT_USER, {"status": "failed", "error_type": "user", "error": str(error)}
    except (Cancelled, KeyboardInterrupt):
        code, result = EXIT_CANCELLED, {"status": "cancelled", "error_type": "cancelled", "error": "cancelled"}
    except Exception as error:  # an internal error: the traceback goes to the log, the worker may retry
        traceback.print_exc()
        code, result = EXIT_INTERNAL, {"status": "failed", "error_type": "internal",
                                       "error": f"{type(error).__name__}: {error}"}
    atomic_write_json(result_file, result)
    store.close()
    return code


if __name__ == "__main__":
    sys.exit(main())
