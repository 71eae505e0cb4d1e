"""Response models of the REST API (what the OpenAPI spec documents and Schemathesis checks)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer: {"error": "what went wrong and how to fix it"}."""

    error: str


class MemberOut(BaseModel):
    user: str
    role: str


class ProjectOut(BaseModel):
    """The caller's project (a token sees only its own)."""

    name: str
    scope: str
    members: list[MemberOut]
    max_concurrent: int | None
    cpu_hours: float | None


class JobOut(BaseModel):
    id: int
    type: str
    status: str
    priority: int
    attempts: int
    max_attempts: int
    cancel_requested: bool
    error: str | None
    error_type: str | None
    output_sha256: str | None
    metrics: dict[str, Any]
    cpu_seconds: float
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    region: str | None = None
    placement: dict[str, Any] | None = None


class AttemptOut(BaseModel):
    number: int
    status: str
    exit_code: int | None
    error: str | None
    started_at: datetime
    finished_at: datetime | None


class JobDetailOut(JobOut):
    config: dict[str, Any]
    inputs: dict[str, str]
    attempt_list: list[AttemptOut]


class LogOut(BaseModel):
    """A slice of an attempt's log: text from byte `offset`, and where to continue (`next_offset`)."""

    job_id: int
    attempt: int
    offset: int
    next_offset: int
    text: str


class ArtifactOut(BaseModel):
    sha256: str
    ref: str
    kind: str
    stage: str
    name: str | None
    size: int
    tags: list[str]
    created_at: datetime
    jurisdiction: str | None = None


class InputOut(BaseModel):
    name: str
    sha256: str


class FileOut(BaseModel):
    """One file of an artifact: download it by its index (never by its path)."""

    index: int
    name: str
    size: int


class ArtifactDetailOut(ArtifactOut):
    manifest: dict[str, Any]
    inputs: list[InputOut]
    files: list[FileOut]


class ModelVersionOut(BaseModel):
    name: str
    version: int
    ref: str
    artifact_sha256: str
    report_sha256: str | None
    gate: dict[str, Any] | None
    aliases: list[str]
    created_by: str
    note: str
    created_at: datetime


class LineageOut(BaseModel):
    """Both directions from one artifact, pruned to the caller's project."""

    artifact: str
    ancestors: dict[str, Any]
    descendants: dict[str, Any]


class PromoteIn(BaseModel):
    """Point an alias at a version: `version` (an integer >= 1) and why (kept in the history)."""

    version: int = Field(ge=1, le=2**31 - 1)
    why: str = Field("", max_length=2000)


class AliasEventOut(BaseModel):
    alias: str
    from_version: int | None
    to_version: int | None
    who: str
    why: str
    at: datetime


class PipelineIn(BaseModel):
    """A pipeline as YAML text (what `embodia run FILE` reads); policies only as registry references."""

    yaml: str = Field(max_length=200_000)


class PlannedStepOut(BaseModel):
    name: str
    type: str
    status: str
    key: str
    detail: str


class PipelineCheckOut(BaseModel):
    """A valid pipeline: its name, steps in run order and (for a plan) each step's cache hit or miss."""

    name: str
    order: list[str]
    plan: list[PlannedStepOut]


class DeploymentOut(BaseModel):
    """A supervised policy server: what it serves and where (its own API answers at `url`)."""

    name: str
    model_ref: str
    model_sha256: str
    status: str
    restarts: int
    url: str
    started_at: str
    message: str


class DeployIn(BaseModel):
    """Start or roll deployment `name` onto a registered model version (`model:NAME@ALIAS` or `model:NAME@vN`);
    policies are accepted only as registry artifacts, never as files, URLs or code."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
    model: str = Field(pattern=r"^model:[A-Za-z0-9][A-Za-z0-9_.-]{0,199}@[A-Za-z0-9_.-]{1,100}$")


class PipelineRunOut(BaseModel):
    """A pipeline run of the project, started here or by `embodia run` / `embodia quickstart` (`origin` cli or api):
    each step's state (pending, running, cached, ran, blocked, skipped, failed, cancelled, interrupted), the steps
    each one waits for (`needs`: the DAG's edges), each step's job id once queued, artifact once done, whether it
    was a cache hit and its message, and the run's status (running, succeeded, failed, cancelled, or interrupted:
    the process running it died) with its error."""

    id: int
    name: str
    status: str
    steps: dict[str, str]
    needs: dict[str, list[str]] = {}
    types: dict[str, str] = {}
    jobs: dict[str, int] = {}
    outputs: dict[str, str] = {}
    cached: dict[str, bool] = {}
    messages: dict[str, str] = {}
    error: str | None
    origin: str = "api"
    source: str = ""
    yaml_sha256: str = ""
    started_at: str | None = None
    finished_at: str | None = None


class MemberIn(BaseModel):
    """Add (or change the role of) a member of the caller's project."""

    user: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f]+$")
    role: Literal["read", "run", "admin"]


class TokenIn(BaseModel):
    """A new token of the caller's project."""

    scope: Literal["read", "run", "admin"]
    name: str = Field("", max_length=200)


class TokenOut(BaseModel):
    """The new token's secret: shown once, only its hash is kept."""

    token: str
    scope: str
