"""Pipeline runs recorded in the store, so every run (CLI, quickstart, API) is listed, live and after a restart.

`PipelineRunner` writes them (`RunRecorder`: one small transaction per step event, plus a heartbeat every
`RUN_HEARTBEAT_S`); the API, the console and `embodia runs` read them (`list_runs`, `get_run`, `run_view`).

A run is `running`, `succeeded`, `failed` or `cancelled` (Ctrl-C). A run still `running` whose heartbeat is older
than `RUN_STALE_S` reads as `interrupted`: the process that ran it died (killed, machine lost), so nothing will
start its remaining steps. The heartbeat is the runner's own rather than its jobs' leases, because gate, register
and deploy steps have no job and a run between steps holds no lease; jobs it had queued still finish in workers.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import selectinload

from embodia.core.errors import UserError
from embodia.platform.models import Artifact, PipelineRunRecord, PipelineRunStep, utcnow
from embodia.platform.pipeline import Pipeline, StepResult
from embodia.platform.store import Store

log = logging.getLogger("embodia.platform.runs")
RUN_STATES = ("running", "succeeded", "failed", "cancelled", "interrupted")
ENDED_STATES = ("succeeded", "failed", "cancelled", "interrupted")
FAILED_STEPS = ("blocked", "failed")
RUN_HEARTBEAT_S = 10.0
RUN_STALE_S = 60.0
MAX_LIST = 1000


# ------------------------------------------------------------------------------------------------ writing
class RunRecorder:
    """Writes one run's record as its events happen; a database hiccup is logged, never fails the pipeline."""

    def __init__(self, store: Store, pipeline: Pipeline, origin: str = "cli") -> None:
        self.store = store
        self.pipeline = pipeline
        self.origin = origin
        self.run_id: int | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def begin(self) -> int:
        """Insert the run (state running) and its steps (pending); returns the run id. Idempotent."""
        if self.run_id is not None:
            return self.run_id
        text = self.pipeline.text
        with self.store.session() as session:
            run = PipelineRunRecord(project=self.pipeline.project, name=self.pipeline.name,
                                    source=self.pipeline.source, origin=self.origin, yaml_text=text,
                                    yaml_sha256=hashlib.sha256(text.encode()).hexdigest() if text else "",
                                    host=socket.gethostname()[:200], pid=os.getpid())
            run.steps = [PipelineRunStep(name=name, position=index, type=self.pipeline.steps[name].type,
                                         needs=sorted(self.pipeline.steps[name].needs))
                         for index, name in enumerate(self.pipeline.order)]
            session.add(run)
            session.flush()
            self.run_id = run.id
        return self.run_id

    def start_heartbeat(self) -> None:
        """Refresh the run's heartbeat every RUN_HEARTBEAT_S from a daemon thread until `finish`."""
        self._beat = threading.Thread(target=self._heartbeat, name=f"run-{self.run_id}-heartbeat", daemon=True)
        self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(RUN_HEARTBEAT_S):
            self._write(update(PipelineRunRecord).where(PipelineRunRecord.id == self.run_id)
                        .values(heartbeat_at=utcnow()))

    def on_event(self, step: str, event: str, payload: dict[str, Any]) -> None:
        """The runner's events: a step started, queued its job, or ended (other progress is not stored)."""
        if self.run_id is None:  # a dry run records nothing
            return
        if event == "start":
            self._step(step, state="running", cache_key=str(payload.get("key", "")), started_at=utcnow())
        elif event == "progress" and payload.get("event") == "job":
            self._step(step, job_id=int(payload["job"]))
        elif event == "end":
            self._end_step(payload["result"])

    def _end_step(self, result: StepResult) -> None:
        values: dict[str, Any] = {"state": result.status, "cache_hit": result.status == "cached",
                                  "message": result.message[:4000], "seconds": float(result.seconds),
                                  "finished_at": utcnow()}
        if result.key:
            values["cache_key"] = result.key
        if result.output is not None:
            values["output_sha256"] = result.output.sha256
        try:
            with self.store.session() as session:
                if result.output is not None:
                    values["artifact_id"] = session.scalar(select(Artifact.id).where(
                        Artifact.sha256 == result.output.sha256))
                session.execute(self._step_update(result.name).values(**values))
        except SQLAlchemyError as error:
            log.warning("pipeline run %s: could not record step %s: %s", self.run_id, result.name, error)

    def finish(self, results: dict[str, StepResult] | None, error: BaseException | None = None) -> str:
        """Record how the run ended (from its step results, or the error that stopped it); returns the state."""
        self._stop.set()
        state, message = outcome(results, error)
        self._write(update(PipelineRunRecord).where(PipelineRunRecord.id == self.run_id)
                    .values(state=state, error=message, finished_at=utcnow(), heartbeat_at=utcnow()))
        if state != "succeeded":  # steps that never ended (Ctrl-C, a crash) would otherwise stay 'running'
            self._write(update(PipelineRunStep).where(PipelineRunStep.run_id == self.run_id,
                                                      PipelineRunStep.state.in_(("pending", "running")))
                        .values(state="skipped" if state == "failed" else "cancelled", finished_at=utcnow()))
        return state

    def _step(self, name: str, **values: Any) -> None:
        self._write(self._step_update(name).values(**values))

    def _step_update(self, name: str):
        return update(PipelineRunStep).where(PipelineRunStep.run_id == self.run_id, PipelineRunStep.name == name)

    def _write(self, statement) -> None:
        if self.run_id is None:
            return
        try:
            with self.store.session() as session:
                session.execute(statement)
        except SQLAlchemyError as error:
            log.warning("pipeline run %s: could not record an event: %s", self.run_id, error)


def outcome(results: dict[str, StepResult] | None, error: BaseException | None) -> tuple[str, str | None]:
    """(state, error message) of a run from its step results, or from the exception that ended it."""
    if error is not None:
        if isinstance(error, KeyboardInterrupt):
            return "cancelled", "interrupted from the keyboard"
        if isinstance(error, UserError):
            return "failed", str(error)
        return "failed", f"internal error: {type(error).__name__}: {error}"[:4000]
    failed = [name for name, result in (results or {}).items() if result.status in FAILED_STEPS]
    return ("failed", f"steps {', '.join(failed)} did not succeed") if failed else ("succeeded", None)


# ------------------------------------------------------------------------------------------------ reading
def list_runs(store: Store, project: str | None = None, *, limit: int = 200) -> list[dict[str, Any]]:
    """Runs (of `project`, or every project), newest first, as `run_view` dicts."""
    query = select(PipelineRunRecord).options(selectinload(PipelineRunRecord.steps))
    if project is not None:
        query = query.where(PipelineRunRecord.project == project)
    query = query.order_by(PipelineRunRecord.id.desc()).limit(max(1, min(limit, MAX_LIST)))
    with store.read_session() as session:
        return [run_view(run) for run in session.scalars(query)]


def get_run(store: Store, run_id: int, project: str | None = None) -> dict[str, Any] | None:
    """Run `run_id` as a `run_view` dict, or None when there is none (in `project`, if given)."""
    with store.read_session() as session:
        run = session.get(PipelineRunRecord, run_id, options=[selectinload(PipelineRunRecord.steps)])
        if run is None or (project is not None and run.project != project):
            return None
        return run_view(run)


def find_run(store: Store, run_id: int) -> dict[str, Any]:
    """Run `run_id`, or a UserError that says how to list the runs (for the CLI)."""
    run = get_run(store, run_id)
    if run is None:
        raise UserError(f"no pipeline run {run_id} in {store.url}; list them with: embodia runs list")
    return run


def run_state(run: PipelineRunRecord, now=None) -> str:
    """The stored state, or 'interrupted' for a running run whose heartbeat is older than RUN_STALE_S."""
    now = now or utcnow()
    if run.state == "running" and run.heartbeat_at < now - timedelta(seconds=RUN_STALE_S):
        return "interrupted"
    return run.state


def run_view(run: PipelineRunRecord) -> dict[str, Any]:
    """A run as plain data: what the API answers, the console shows and `embodia runs show` prints."""
    status = run_state(run)
    steps = {step.name: ("interrupted" if status == "interrupted" and step.state == "running" else step.state)
             for step in run.steps}
    error = run.error
    if status == "interrupted" and not error:
        error = (f"the process that ran it ({run.host} pid {run.pid}) stopped reporting at "
                 f"{run.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC")
    return {"id": run.id, "project": run.project, "name": run.name, "status": status, "steps": steps,
            "needs": {step.name: list(step.needs) for step in run.steps},
            "types": {step.name: step.type for step in run.steps},
            "jobs": {step.name: step.job_id for step in run.steps if step.job_id is not None},
            "outputs": {step.name: step.output_sha256 for step in run.steps if step.output_sha256},
            "cached": {step.name: step.cache_hit for step in run.steps},
            "messages": {step.name: step.message for step in run.steps if step.message},
            "error": error, "origin": run.origin, "source": run.source, "yaml_sha256": run.yaml_sha256,
            "started_at": run.started_at.isoformat(),
            "finished_at": run.finished_at.isoformat() if run.finished_at else None}
