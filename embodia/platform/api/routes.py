"""The /api/v1 routes. Every query is filtered by the caller's project: another tenant's job, artifact or model
answers 404 exactly like an id that does not exist, so nothing can be inferred from it."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any, AsyncIterator

import yaml
from fastapi import APIRouter, Path as PathParam, Query, Request
from fastapi.responses import FileResponse, StreamingResponse
from sqlalchemy import select, union

from embodia.core.errors import UserError
from embodia.platform import deploy, queue, registry
from embodia.platform.api.auth import Caller, create_token, require
from embodia.platform.api.schemas import (AliasEventOut, ArtifactDetailOut, ArtifactOut, AttemptOut, DeployIn,
                                          DeploymentOut, FileOut, InputOut, JobDetailOut, JobOut, LineageOut, LogOut,
                                          MemberIn, MemberOut, ModelVersionOut, PipelineCheckOut, PipelineIn,
                                          PipelineRunOut, ProjectOut, PromoteIn, TokenIn, TokenOut)
from embodia.platform.api.robots import check_references, compile_mjcf, find_mjcf
from embodia.platform.api.uploads import extract_archive
from embodia.platform.models import Artifact, Job, Member, ModelVersion, Project, ProjectArtifact
from embodia.platform.pipeline import Pipeline, parse_pipeline
from embodia.platform.runner import PipelineRunner
from embodia.platform.store import Store

SHA = PathParam(pattern=r"^[0-9a-f]{64}$", description="the artifact's full sha256 (lowercase hex)")
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
JOB_ID = PathParam(ge=1, le=2**31 - 1, description="the job's id")
LIMIT = Query(50, ge=1, le=500, description="at most this many, newest first")
MAX_LOG_CHUNK = 1 << 20
STREAM_POLL_S = 0.5
STREAM_MAX_S = 3600.0
ENDED = ("succeeded", "failed", "cancelled")

router = APIRouter(prefix="/api/v1")


class NotFound(LookupError):
    """An id the caller's project cannot see (404, whether it exists elsewhere or not)."""


def _store(request: Request) -> Store:
    return request.app.state.store


def visible_shas(project: str):
    """A SELECT of the sha256 of every artifact `project` may see: uploaded there or made by its jobs."""
    uploaded = select(ProjectArtifact.sha256).where(ProjectArtifact.project == project)
    made = select(Artifact.sha256).join(Job, Job.id == Artifact.creator_job_id).where(Job.project == project)
    return union(uploaded, made)


def _check_visible(store: Store, project: str, sha256: str) -> None:
    with store.session() as session:
        query = visible_shas(project).subquery()
        if session.execute(select(query.c.sha256).where(query.c.sha256 == sha256)).first() is None:
            raise NotFound(f"no artifact {sha256} in this project")


def _job_and_attempts(store: Store, caller: Caller, job_id: int,
                      with_attempts: bool = False) -> tuple[queue.JobInfo, list[queue.AttemptInfo]]:
    found = queue.find_job(store, job_id, project=caller.project, with_attempts=with_attempts)
    if found is None:
        raise NotFound(f"no job {job_id} in this project")
    return found


def _job(store: Store, caller: Caller, job_id: int) -> queue.JobInfo:
    return _job_and_attempts(store, caller, job_id)[0]


def _job_out(info: queue.JobInfo) -> dict[str, Any]:
    return {name: getattr(info, name) for name in JobOut.model_fields}


# ------------------------------------------------------------------------------------------------ projects


@router.get("/project", response_model=ProjectOut, tags=["projects"])
def get_project(request: Request, caller: Caller = require("read")) -> ProjectOut:
    """The caller's project: its members and quotas (a token belongs to exactly one project)."""
    with _store(request).session() as session:
        row = session.get(Project, caller.project)
        members = session.scalars(select(Member).where(Member.project == caller.project).order_by(Member.user))
        return ProjectOut(name=caller.project, scope=caller.scope,
                          members=[MemberOut(user=m.user, role=m.role) for m in members],
                          max_concurrent=row.max_concurrent if row else None, cpu_hours=row.cpu_hours if row else None)


@router.post("/project/members", response_model=ProjectOut, tags=["projects"])
def add_member(request: Request, body: MemberIn, caller: Caller = require("admin")) -> ProjectOut:
    """Add a member to the caller's project, or change their role."""
    with _store(request).session() as session:
        row = session.get(Member, (caller.project, body.user))
        if row is None:
            session.add(Member(project=caller.project, user=body.user, role=body.role))
        else:
            row.role = body.role
    return get_project(request, caller=caller)


@router.post("/project/tokens", response_model=TokenOut, status_code=201, tags=["projects"])
def new_token(request: Request, body: TokenIn, caller: Caller = require("admin")) -> TokenOut:
    """A new token of the caller's project (shown once; only its hash is stored)."""
    return TokenOut(token=create_token(_store(request), caller.project, body.scope, body.name), scope=body.scope)


# ---------------------------------------------------------------------------------------------------- jobs


STATUS_PATTERN = "^(queued|held|running|succeeded|failed|cancelled)$"


@router.get("/jobs", response_model=list[JobOut], tags=["jobs"])
def list_jobs(request: Request, status: str | None = Query(None, pattern=STATUS_PATTERN),
              limit: int = LIMIT, caller: Caller = require("read")) -> list[dict[str, Any]]:
    """The project's jobs, newest first."""
    jobs = queue.list_jobs(_store(request), status=status, project=caller.project, limit=limit)
    return [_job_out(job) for job in jobs]


@router.get("/jobs/{job_id}", response_model=JobDetailOut, tags=["jobs"])
def get_job(request: Request, job_id: int = JOB_ID, caller: Caller = require("read")) -> dict[str, Any]:
    """One job with its config, inputs and attempts."""
    info, attempt_rows = _job_and_attempts(_store(request), caller, job_id, with_attempts=True)
    attempts = [AttemptOut(number=a.number, status=a.status, exit_code=a.exit_code, error=a.error,
                           started_at=a.started_at, finished_at=a.finished_at) for a in attempt_rows]
    return {**_job_out(info), "config": info.config, "inputs": info.inputs, "attempt_list": attempts}


@router.get("/jobs/{job_id}/logs", response_model=LogOut, tags=["jobs"])
def job_logs(request: Request, job_id: int = JOB_ID, attempt: int | None = Query(None, ge=1, le=1000),
             offset: int = Query(0, ge=0, le=2**40), caller: Caller = require("read")) -> LogOut:
    """A slice (at most 1 MiB) of an attempt's log from byte `offset` (default: the latest attempt)."""
    store = _store(request)
    info = _job(store, caller, job_id)
    number = attempt or info.attempts
    if number < 1 or number > info.attempts:
        raise NotFound(f"job {job_id} has no attempt {number}")
    path = queue.attempt_log(store, job_id, number)
    data = b""
    if path.is_file():
        with open(path, "rb") as log:
            log.seek(offset)
            data = log.read(MAX_LOG_CHUNK)
    return LogOut(job_id=job_id, attempt=number, offset=offset, next_offset=offset + len(data),
                  text=data.decode("utf-8", "replace"))


async def _status_events(store: Store, caller: Caller, job_id: int) -> AsyncIterator[str]:
    waited, last = 0.0, None
    while True:
        info = await asyncio.to_thread(_job, store, caller, job_id)
        body = json.dumps(_job_out(info), default=str)
        if body != last:
            yield f"event: status\ndata: {body}\n\n"
            last = body
        if info.status in ENDED or waited >= STREAM_MAX_S:
            return
        await asyncio.sleep(STREAM_POLL_S)
        waited += STREAM_POLL_S


@router.get("/jobs/{job_id}/events", tags=["jobs"], response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}, "description": "status events (SSE)"}})
def job_events(request: Request, job_id: int = JOB_ID, caller: Caller = require("read")) -> StreamingResponse:
    """Server-sent events: the job's status each time it changes, ending when the job ends."""
    store = _store(request)
    _job(store, caller, job_id)
    return StreamingResponse(_status_events(store, caller, job_id), media_type="text/event-stream")


@router.post("/jobs/{job_id}/cancel", response_model=JobOut, tags=["jobs"])
def cancel_job(request: Request, job_id: int = JOB_ID, caller: Caller = require("run")) -> dict[str, Any]:
    """Cancel a queued or running job (a running one stops at its stage's next check)."""
    _job(_store(request), caller, job_id)
    return _job_out(queue.cancel(_store(request), job_id))


@router.post("/jobs/{job_id}/retry", response_model=JobOut, tags=["jobs"])
def retry_job(request: Request, job_id: int = JOB_ID, caller: Caller = require("run")) -> dict[str, Any]:
    """Queue a failed or cancelled job again."""
    _job(_store(request), caller, job_id)
    return _job_out(queue.retry(_store(request), job_id))


# ----------------------------------------------------------------------------------------------- artifacts


def _artifact_out(info: registry.ArtifactInfo) -> dict[str, Any]:
    return {"sha256": info.sha256, "ref": info.ref, "kind": info.kind, "stage": info.stage, "name": info.name,
            "size": info.size, "tags": info.tags, "created_at": info.created_at, "jurisdiction": info.jurisdiction}


def _files(store: Store, sha256: str) -> list[Path]:
    root = store.artifacts.path(sha256)
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())


@router.get("/artifacts", response_model=list[ArtifactOut], tags=["artifacts"])
def list_artifacts(request: Request, kind: str | None = Query(None, max_length=32), limit: int = LIMIT,
                   caller: Caller = require("read")) -> list[dict[str, Any]]:
    """The project's artifacts, newest first."""
    store = _store(request)
    with store.session() as session:
        query = select(Artifact.sha256).where(Artifact.sha256.in_(visible_shas(caller.project)))
        if kind:
            query = query.where(Artifact.kind == kind)
        shas = list(session.scalars(query.order_by(Artifact.id.desc()).limit(limit)))
    return [_artifact_out(registry.get_artifact(store, sha)) for sha in shas]


@router.get("/reports", response_model=list[ArtifactOut], tags=["evaluation"])
def list_reports(request: Request, limit: int = LIMIT, caller: Caller = require("read")) -> list[dict[str, Any]]:
    """The project's evaluation reports (artifacts of kind `report`; `report.html` is among each one's files)."""
    return list_artifacts(request, kind="report", limit=limit, caller=caller)


@router.get("/artifacts/{sha256}", response_model=ArtifactDetailOut, tags=["artifacts"])
def get_artifact(request: Request, sha256: str = SHA, caller: Caller = require("read")) -> dict[str, Any]:
    """An artifact's metadata, manifest, inputs and files (download a file by its index)."""
    store = _store(request)
    _check_visible(store, caller.project, sha256)
    info = registry.get_artifact(store, sha256)
    root = store.artifacts.path(sha256)
    files = [FileOut(index=i, name=p.relative_to(root).as_posix(), size=p.stat().st_size)
             for i, p in enumerate(_files(store, sha256))]
    return {**_artifact_out(info), "manifest": info.manifest, "files": files,
            "inputs": [InputOut(name=ref.name, sha256=ref.sha256) for ref in info.inputs]}


@router.get("/artifacts/{sha256}/files/{index}", tags=["artifacts"], response_class=FileResponse,
            responses={200: {"content": {"application/octet-stream": {}}}, 206: {"description": "a byte range"}})
def download_file(request: Request, sha256: str = SHA, index: int = PathParam(ge=0, le=10**6),
                  caller: Caller = require("read")) -> FileResponse:
    """Download file number `index` of an artifact (HTTP Range requests answer 206 with that byte range)."""
    store = _store(request)
    _check_visible(store, caller.project, sha256)
    files = _files(store, sha256)
    if index >= len(files):
        raise NotFound(f"artifact {sha256} has no file {index}")
    return FileResponse(files[index], filename=files[index].name)


@router.get("/lineage/{sha256}", response_model=LineageOut, tags=["lineage"])
def get_lineage(request: Request, sha256: str = SHA, caller: Caller = require("read")) -> dict[str, Any]:
    """Where an artifact came from and what was made from it, limited to the caller's project."""
    store = _store(request)
    _check_visible(store, caller.project, sha256)
    graph = registry.lineage(store, sha256)
    with store.session() as session:
        query = visible_shas(caller.project).subquery()
        allowed = set(session.scalars(select(query.c.sha256)))
    return {"artifact": sha256, "ancestors": _prune(graph["ancestors"], allowed),
            "descendants": _prune(graph["descendants"], allowed)}


def _prune(node: dict[str, Any], allowed: set[str]) -> dict[str, Any]:
    """The lineage tree without nodes of other projects (nor anything reached only through them)."""
    return {**node, "next": [_prune(child, allowed) for child in node["next"] if child["sha256"] in allowed]}


# ------------------------------------------------------------------------------------------------ registry


def _version_out(info: registry.ModelVersionInfo) -> dict[str, Any]:
    return {name: getattr(info, name) for name in ModelVersionOut.model_fields if name != "ref"} | {"ref": info.ref}


@router.get("/models", response_model=list[ModelVersionOut], tags=["registry"])
def list_models(request: Request, name: str | None = Query(None, max_length=200),
                caller: Caller = require("read")) -> list[dict[str, Any]]:
    """Model versions whose artifact belongs to the caller's project, with their aliases and gate verdicts."""
    store = _store(request)
    with store.session() as session:
        query = select(ModelVersion.name, ModelVersion.version).join(Artifact, Artifact.id == ModelVersion.artifact_id)
        query = query.where(Artifact.sha256.in_(visible_shas(caller.project)))
        if name:
            query = query.where(ModelVersion.name == name)
        rows = list(session.execute(query.order_by(ModelVersion.name, ModelVersion.version)))
    return [_version_out(registry.get_model_version(store, row.name, row.version)) for row in rows]


def _visible_version(store: Store, caller: Caller, name: str, version: int) -> registry.ModelVersionInfo:
    try:
        info = registry.get_model_version(store, name, version)
    except UserError:
        info = None
    if info is None:
        raise NotFound(f"no model {name} version {version} in this project")
    try:
        _check_visible(store, caller.project, info.artifact_sha256)
    except NotFound:
        raise NotFound(f"no model {name} version {version} in this project") from None
    return info


@router.post("/models/{name}/aliases/{alias}", response_model=ModelVersionOut, tags=["registry"])
def promote(request: Request, body: PromoteIn,
            name: str = PathParam(pattern=NAME_PATTERN, description="the model's name"),
            alias: str = PathParam(pattern=NAME_PATTERN, description="the alias (production, staging, ...)"),
            caller: Caller = require("admin")) -> dict[str, Any]:
    """Point NAME@ALIAS at a version of the project (who and why recorded); the answer carries its gate verdict."""
    store = _store(request)
    _visible_version(store, caller, name, body.version)
    return _version_out(registry.set_alias(store, name, alias, body.version, who=f"token:{caller.token_id}",
                                           why=body.why))


@router.get("/models/{name}/aliases", response_model=list[AliasEventOut], tags=["registry"])
def alias_events(request: Request, name: str = PathParam(pattern=NAME_PATTERN, description="the model's name"),
                 caller: Caller = require("read")) -> list[dict[str, Any]]:
    """Every move of NAME's aliases, oldest first (only for models of the caller's project)."""
    store = _store(request)
    versions = list_models(request, name=name, caller=caller)
    if not versions:
        raise NotFound(f"no model {name} in this project")
    return [{"alias": e.alias, "from_version": e.from_version, "to_version": e.to_version, "who": e.who,
             "why": e.why, "at": e.at} for e in registry.alias_history(store, name)]


# ----------------------------------------------------------------------------------------------- pipelines


def _pipeline(store: Store, caller: Caller, body: PipelineIn) -> Pipeline:
    """Parse and validate YAML text; the pipeline runs in the caller's project whatever its file says."""
    try:
        data = yaml.safe_load(body.yaml)
    except yaml.YAMLError as error:
        raise UserError(f"pipeline: not valid YAML ({str(error).splitlines()[0]})") from None
    pipeline = parse_pipeline(data, "pipeline")
    pipeline.project, pipeline.text = caller.project, body.yaml
    return pipeline


def _check_registry_inputs(store: Store, caller: Caller, pipeline: Pipeline) -> set[tuple[str, str]]:
    """Every registry reference must name an artifact of the caller's project (the same error whether it exists
    elsewhere or not); a gate's baseline outside the project counts as absent. Returns those absent baselines."""
    absent = set()
    for step in pipeline.steps.values():
        for name, ref in step.registry_inputs.items():
            try:
                _check_visible(store, caller.project, registry.resolve(store, ref).sha256)
            except (UserError, NotFound):
                if step.type == "gate" and name == "baseline":
                    absent.add((step.name, name))
                    continue
                raise UserError(f"pipeline: step {step.name!r}: inputs.{name}: no artifact {ref!r} "
                                "in this project") from None
    return absent


@router.post("/pipelines/validate", response_model=PipelineCheckOut, tags=["pipelines"])
def validate_pipeline(request: Request, body: PipelineIn, caller: Caller = require("read")) -> dict[str, Any]:
    """Check a pipeline (every step's config with its stage's own schema, inputs, order); nothing runs."""
    store = _store(request)
    pipeline = _pipeline(store, caller, body)
    _check_registry_inputs(store, caller, pipeline)
    return {"name": pipeline.name, "order": pipeline.order, "plan": []}


@router.post("/pipelines/plan", response_model=PipelineCheckOut, tags=["pipelines"])
def plan_pipeline(request: Request, body: PipelineIn, caller: Caller = require("read")) -> dict[str, Any]:
    """A dry run: each step's cache key and whether it is a hit (nothing runs)."""
    store = _store(request)
    pipeline = _pipeline(store, caller, body)
    absent = _check_registry_inputs(store, caller, pipeline)
    runner = PipelineRunner(pipeline, store, local_workers=False)
    for key in absent:
        runner.registry_outputs[key] = None
    rows = [{"name": r.name, "type": r.type, "status": r.status, "key": r.key, "detail": r.detail}
            for r in runner.plan()]
    return {"name": pipeline.name, "order": pipeline.order, "plan": rows}


# ------------------------------------------------------------------------------------------------- uploads


@router.post("/artifacts/datasets", response_model=ArtifactOut, status_code=201, tags=["artifacts"],
             openapi_extra={"requestBody": {"required": True, "content": {"application/octet-stream": {
                 "schema": {"type": "string", "format": "binary"}}}}})
async def upload_dataset(request: Request, name: str | None = Query(None, pattern=NAME_PATTERN),
                         caller: Caller = require("run")) -> dict[str, Any]:
    """Upload a LeRobot dataset as a tar/tar.gz/zip body: unpacked safely, checked (`embodia data check`'s fast
    path) and registered in the caller's project. Never executes or unpickles anything in it."""
    return await _upload(request, caller, "dataset", name, _check_dataset)


# --------------------------------------------------------------------------------------------- deployments


def _deployment_out(state: deploy.DeploymentState) -> dict[str, Any]:
    return {"name": state.name, "model_ref": state.model_ref, "model_sha256": state.model_sha256,
            "status": state.status, "restarts": state.restarts, "url": state.url, "started_at": state.started_at,
            "message": state.message}


def _own_deployments(store: Store, caller: Caller) -> list[deploy.DeploymentState]:
    with store.session() as session:
        query = visible_shas(caller.project).subquery()
        allowed = set(session.scalars(select(query.c.sha256)))
    return [state for state in deploy.list_deployments(store.home) if state.model_sha256 in allowed]


def _own_deployment(store: Store, caller: Caller, name: str) -> deploy.DeploymentState:
    found = [state for state in _own_deployments(store, caller) if state.name == name]
    if not found:
        raise NotFound(f"no deployment {name} in this project")
    return found[0]


@router.get("/deployments", response_model=list[DeploymentOut], tags=["deployments"])
def list_deployments(request: Request, caller: Caller = require("read")) -> list[dict[str, Any]]:
    """The project's policy servers with their status and URL."""
    return [_deployment_out(state) for state in _own_deployments(_store(request), caller)]


@router.post("/deployments/{name}/stop", response_model=DeploymentOut, tags=["deployments"])
def stop_deployment(request: Request, name: str = PathParam(pattern=NAME_PATTERN, description="the deployment"),
                    caller: Caller = require("admin")) -> dict[str, Any]:
    """Stop a deployment's policy server."""
    store = _store(request)
    _own_deployment(store, caller, name)
    return _deployment_out(deploy.stop(store, name))


@router.post("/deployments", response_model=DeploymentOut, tags=["deployments"])
def start_deployment(request: Request, body: DeployIn, caller: Caller = require("admin")) -> dict[str, Any]:
    """Start deployment NAME on a model version of the project; if NAME already serves, a rolling update (the
    new server is healthy before the old one stops)."""
    from embodia.platform.steps import model_file

    store = _store(request)
    try:
        version = registry.resolve_model_version(store, body.model)
        _check_visible(store, caller.project, version.artifact_sha256)
    except (UserError, NotFound):
        raise NotFound(f"no model {body.model} in this project") from None
    if any(state.name == body.name for state in deploy.list_deployments(store.home)):
        _own_deployment(store, caller, body.name)  # another project's deployment name: 404, never rolled
    path = store.artifacts.locate(version.artifact_sha256)
    state = deploy.start(store, body.name, model_file(path), version.artifact_sha256, model_ref=version.ref)
    return _deployment_out(state)


@router.post("/artifacts/robots", response_model=ArtifactOut, status_code=201, tags=["artifacts"],
             openapi_extra={"requestBody": {"required": True, "content": {"application/octet-stream": {
                 "schema": {"type": "string", "format": "binary"}}}}})
async def upload_robot(request: Request, name: str | None = Query(None, pattern=NAME_PATTERN),
                       caller: Caller = require("run")) -> dict[str, Any]:
    """Upload an MJCF robot as a tar/tar.gz/zip (one top-level .xml, its includes and meshes beside it): file
    references must stay inside it, and it must compile (MuJoCo in a child process with CPU/memory limits)."""
    return await _upload(request, caller, "robot", name, _check_robot)


def _check_dataset(root: Path) -> None:
    from embodia.data.check import require_valid_dataset

    require_valid_dataset(root)


def _check_robot(root: Path) -> None:
    check_references(root)
    compile_mjcf(find_mjcf(root))


async def _upload(request: Request, caller: Caller, kind: str, name: str | None, check) -> dict[str, Any]:
    """Read the archive body, then unpack, check and register it (in a thread: checks can take seconds)."""
    data = await request.body()
    if not data:
        raise UserError(f"empty upload: send the {kind} archive (tar, tar.gz or zip) as the request body")
    info = await asyncio.to_thread(_register, _store(request), caller, data, kind, name, check)
    return _artifact_out(info)


def _register(store: Store, caller: Caller, data: bytes, kind: str, name: str | None,
              check) -> registry.ArtifactInfo:
    """Unpack safely into the workspace's tmp/, check, register and record the caller's project as its owner."""
    store.path("tmp").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=store.path("tmp")) as tmp:
        root = extract_archive(data, Path(tmp) / "upload")
        check(root)
        info = registry.register_artifact(store, root, kind=kind, name=name)
    _own(store, caller, info.sha256)
    return info


def _own(store: Store, caller: Caller, sha256: str) -> None:
    """Record that the caller's project holds artifact `sha256`."""
    with store.session() as session:
        if session.get(ProjectArtifact, (caller.project, sha256)) is None:
            session.add(ProjectArtifact(project=caller.project, sha256=sha256))


@router.post("/pipelines", response_model=PipelineRunOut, status_code=202, tags=["pipelines"])
def run_pipeline(request: Request, body: PipelineIn, caller: Caller = require("run")) -> dict[str, Any]:
    """Validate and start a pipeline in the caller's project (cached steps are reused); follow it with
    GET /pipelines/runs/{id} and its stage jobs with /jobs."""
    store = _store(request)
    pipeline = _pipeline(store, caller, body)
    absent = _check_registry_inputs(store, caller, pipeline)
    runner = PipelineRunner(pipeline, store, origin="api")
    for key in absent:
        runner.registry_outputs[key] = None
    return request.app.state.runs.start(runner)


@router.get("/pipelines/runs", response_model=list[PipelineRunOut], tags=["pipelines"])
def list_runs(request: Request, limit: int = Query(200, ge=1, le=1000),
              caller: Caller = require("read")) -> list[dict[str, Any]]:
    """The project's pipeline runs, newest first: those started here and by `embodia run` or `quickstart`."""
    return request.app.state.runs.of(caller.project, limit)


@router.get("/pipelines/runs/{run_id}", response_model=PipelineRunOut, tags=["pipelines"])
def get_run(request: Request, run_id: int = PathParam(ge=1, le=2**31 - 1), caller: Caller = require("read")) -> dict:
    """One pipeline run: each step's state."""
    run = request.app.state.runs.get(caller.project, run_id)
    if run is None:
        raise NotFound(f"no pipeline run {run_id} in this project")
    return run
