"""Console pages for work in progress: pipeline runs (submit YAML, a live DAG of step states polled by htmx) and
jobs (attempts, cancel/retry, live logs over server-sent events)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import (
    HTMLResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from pydantic import ValidationError

from embodia.core.errors import UserError
from embodia.platform.api import routes
from embodia.platform.api.auth import Caller
from embodia.platform.api.console.graphs import Node, layered
from embodia.platform.api.console.pages import posted, render
from embodia.platform.api.console.session import console_caller
from embodia.platform.api.schemas import PipelineIn

router = APIRouter(prefix="/console", include_in_schema=False)
RUN_ID = PathParam(ge=1, le=2**31 - 1)
JOB_ID = PathParam(ge=1, le=2**31 - 1)
LOG_POLL_S = 0.5
LOG_STREAM_MAX_S = 3600.0


# ----------------------------------------------------------------------------------------------- pipelines


@router.get("/pipelines", response_class=HTMLResponse)
def pipelines_page(request: Request) -> Response:
    """The project's pipeline runs and the form to submit one."""
    caller = console_caller(request)
    return _pipelines(request, caller, yaml_text="", error=None)


def _pipelines(request: Request, caller: Caller, *, yaml_text: str, error: str | None,
               status: int = 200) -> Response:
    runs = routes.list_runs(request, limit=200, caller=caller)
    return render(request, "pipelines.html", caller, status=status, section="Pipelines", title="Pipelines",
                  runs=runs, yaml_text=yaml_text, error=error, can_run=caller.allows("run"))


@router.post("/pipelines", response_class=HTMLResponse)
async def submit_pipeline(request: Request) -> Response:
    """Validate and start a pipeline from the form's YAML (the API's own route); errors keep the text."""
    caller, fields = await posted(request, "run")
    text = fields.get("yaml", "")
    try:
        run = await asyncio.to_thread(routes.run_pipeline, request, PipelineIn(yaml=text), caller=caller)
    except UserError as error:
        return _pipelines(request, caller, yaml_text=text, error=str(error), status=400)
    except ValidationError as error:
        message = "; ".join(e["msg"] for e in error.errors())
        return _pipelines(request, caller, yaml_text=text, error=f"pipeline: {message}", status=400)
    return RedirectResponse(f"/console/pipelines/{run['id']}", status_code=303)


@router.get("/pipelines/{run_id}", response_class=HTMLResponse)
def pipeline_page(request: Request, run_id: int = RUN_ID) -> Response:
    """One pipeline run: its DAG, live while it runs."""
    caller = console_caller(request)
    run = routes.get_run(request, run_id=run_id, caller=caller)
    return render(request, "pipeline.html", caller, section="Pipelines", title=f"Pipeline run {run_id}",
                  run=run, dag=_dag(run))


@router.get("/pipelines/{run_id}/dag", response_class=HTMLResponse)
def pipeline_dag(request: Request, run_id: int = RUN_ID) -> Response:
    """The DAG fragment htmx polls; once the run has ended it no longer asks to be polled."""
    caller = console_caller(request)
    run = routes.get_run(request, run_id=run_id, caller=caller)
    return render(request, "_dag.html", caller, run=run, dag=_dag(run))


def _dag(run: dict[str, Any]):
    """Boxes for the steps (class = state; a link to the step's job or artifact) and edges from `needs`."""
    nodes = []
    for name, state in run["steps"].items():
        job, output = run.get("jobs", {}).get(name), run.get("outputs", {}).get(name)
        href = f"/console/artifacts/{output}" if output else (f"/console/jobs/{job}" if job else None)
        nodes.append(Node(name, name, state, state, href))
    edges = [(need, name) for name, needs in run.get("needs", {}).items() for need in needs]
    return layered(nodes, edges)


# ---------------------------------------------------------------------------------------------------- jobs


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(request: Request, status: str | None = Query(None, pattern=routes.STATUS_PATTERN)) -> Response:
    """The project's jobs, newest first, optionally of one status."""
    caller = console_caller(request)
    jobs = routes.list_jobs(request, status=status, limit=200, caller=caller)
    return render(request, "jobs.html", caller, section="Jobs", title="Jobs", jobs=jobs, status_filter=status or "",
                  statuses=("queued", "running", "succeeded", "failed", "cancelled"))


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: int = JOB_ID) -> Response:
    """One job: status, config, attempts and its latest attempt's log, followed live."""
    caller = console_caller(request)
    job = routes.get_job(request, job_id=job_id, caller=caller)
    return render(request, "job.html", caller, section="Jobs", title=f"Job {job_id}", job=job,
                  config=json.dumps(job["config"], indent=2, default=str), can_run=caller.allows("run"),
                  ended=job["status"] in routes.ENDED)


@router.post("/jobs/{job_id}/{action}")
async def job_action(request: Request, job_id: int = JOB_ID,
                     action: str = PathParam(pattern="^(cancel|retry)$")) -> Response:
    """Cancel or retry a job (run scope) through the API's routes."""
    caller, _ = await posted(request, "run")
    act = routes.cancel_job if action == "cancel" else routes.retry_job
    await asyncio.to_thread(act, request, job_id=job_id, caller=caller)
    return RedirectResponse(f"/console/jobs/{job_id}", status_code=303)


@router.get("/jobs/{job_id}/log-stream")
def job_log_stream(request: Request, job_id: int = JOB_ID) -> StreamingResponse:
    """Server-sent events: `log` (new text of the latest attempt's log), `status` (on change), then `end`."""
    caller = console_caller(request)
    routes.get_job(request, job_id=job_id, caller=caller)
    return StreamingResponse(_log_events(request, caller, job_id), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def _log_events(request: Request, caller: Caller, job_id: int) -> AsyncIterator[str]:
    offset, attempt, last_status, waited = 0, None, None, 0.0
    while waited < LOG_STREAM_MAX_S and not await request.is_disconnected():
        job = await asyncio.to_thread(routes.get_job, request, job_id=job_id, caller=caller)
        if job["status"] != last_status:
            last_status = job["status"]
            yield _event("status", {"status": last_status})
        if job["attempts"] and job["attempts"] != attempt:
            attempt, offset = job["attempts"], 0
        text = ""
        if attempt:
            chunk = await asyncio.to_thread(routes.job_logs, request, job_id=job_id, attempt=attempt, offset=offset,
                                            caller=caller)
            offset, text = chunk.next_offset, chunk.text
        if text:
            yield _event("log", {"text": text})
        elif job["status"] in routes.ENDED:
            yield _event("end", {"status": job["status"]})
            return
        else:
            await asyncio.sleep(LOG_POLL_S)
            waited += LOG_POLL_S


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"
