"""Pipeline runs started through the API: each runs in a background thread of the server with local workers
(its stage jobs go to the durable queue under the caller's project); the step states are kept in memory."""

from __future__ import annotations

import itertools
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from embodia.core.errors import UserError
from embodia.platform.pipeline import Pipeline
from embodia.platform.runner import PipelineRunner

log = logging.getLogger("embodia.api")
FAILED_STEPS = ("blocked", "failed")


@dataclass
class PipelineRun:
    """One run: its project, name, step states and outcome."""

    id: int
    project: str
    name: str
    steps: dict[str, str]
    needs: dict[str, list[str]] = field(default_factory=dict)
    jobs: dict[str, int] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    status: str = "running"
    error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def on_event(self, step: str, event: str, payload: dict[str, Any]) -> None:
        """The runner's callback: a step started, queued its job, or ended (with its artifact)."""
        with self.lock:
            if event == "start":
                self.steps[step] = "running"
            elif event == "progress" and payload.get("event") == "job":
                self.jobs[step] = int(payload["job"])
            elif event == "end":
                result = payload["result"]
                self.steps[step] = result.status
                if result.output is not None:
                    self.outputs[step] = result.output.sha256

    def out(self) -> dict[str, Any]:
        """The run as the API answers it."""
        with self.lock:
            return {"id": self.id, "name": self.name, "status": self.status, "steps": dict(self.steps),
                    "needs": {name: list(deps) for name, deps in self.needs.items()}, "jobs": dict(self.jobs),
                    "outputs": dict(self.outputs), "error": self.error}


class PipelineRuns:
    """The server's pipeline runs, by id."""

    def __init__(self) -> None:
        self._runs: dict[int, PipelineRun] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def start(self, runner: PipelineRunner, pipeline: Pipeline) -> PipelineRun:
        """Start `runner` in a background thread and return its run record."""
        with self._lock:
            steps = dict.fromkeys(pipeline.order, "pending")
            needs = {name: sorted(pipeline.steps[name].needs) for name in pipeline.order}
            run = PipelineRun(next(self._ids), pipeline.project, pipeline.name, steps, needs)
            self._runs[run.id] = run
        runner.on_event = run.on_event
        threading.Thread(target=_run, args=(runner, run), name=f"pipeline-{run.id}", daemon=True).start()
        return run

    def get(self, project: str, run_id: int) -> PipelineRun | None:
        """Run `run_id` if it belongs to `project`."""
        run = self._runs.get(run_id)
        return run if run is not None and run.project == project else None

    def of(self, project: str) -> list[PipelineRun]:
        """The project's runs, newest first."""
        return [run for run in reversed(list(self._runs.values())) if run.project == project]


def _run(runner: PipelineRunner, run: PipelineRun) -> None:
    try:
        results = runner.run()
        failed = [name for name, result in results.items() if result.status in FAILED_STEPS]
        status, error = ("failed", f"steps {', '.join(failed)} did not succeed") if failed else ("succeeded", None)
    except UserError as problem:
        status, error = "failed", str(problem)
    except Exception:
        log.exception("pipeline run %s failed", run.id)
        status, error = "failed", "internal error (logged on the server)"
    with run.lock:
        run.status, run.error = status, error
