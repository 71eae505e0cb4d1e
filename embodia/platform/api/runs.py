"""Pipeline runs started through the API: each runs in a background thread of the server with local workers
(its stage jobs go to the durable queue under the caller's project). Their state, like that of runs started by
`embodia run` or `embodia quickstart`, lives in the store (`embodia.platform.runs`), so every run of a project is
listed, live, by any server process and after a restart."""

from __future__ import annotations

import logging
import threading
from typing import Any

from embodia.core.errors import UserError
from embodia.platform import runs
from embodia.platform.runner import PipelineRunner
from embodia.platform.store import Store

log = logging.getLogger("embodia.api")


class PipelineRuns:
    """The workspace's pipeline runs (read from the store) and the threads of those this server started."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._threads: dict[int, threading.Thread] = {}

    def start(self, runner: PipelineRunner) -> dict[str, Any]:
        """Record the run, start `runner` in a background thread and return the run as the API answers it."""
        runner.origin = runner.recorder.origin = "api"
        run_id = runner.begin()
        thread = threading.Thread(target=_run, args=(runner, run_id), name=f"pipeline-{run_id}", daemon=True)
        self._threads[run_id] = thread
        thread.start()
        return runs.get_run(self.store, run_id)

    def get(self, project: str, run_id: int) -> dict[str, Any] | None:
        """Run `run_id` if it belongs to `project`."""
        return runs.get_run(self.store, run_id, project)

    def of(self, project: str, limit: int = 200) -> list[dict[str, Any]]:
        """The project's runs, newest first."""
        return runs.list_runs(self.store, project, limit=limit)


def _run(runner: PipelineRunner, run_id: int) -> None:
    """The run's thread: the runner records its own outcome; here only what it raised is logged."""
    try:
        runner.run()
    except UserError as problem:
        log.info("pipeline run %s failed: %s", run_id, problem)
    except Exception:
        log.exception("pipeline run %s failed", run_id)
