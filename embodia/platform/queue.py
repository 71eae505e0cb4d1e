"""The durable job queue: jobs are rows that workers claim under a lease and keep by heartbeating.

Public API (every function takes an open `Store` first):
    submit(store, type, config=None, *, inputs=None, project='default', priority=0, cpus=1.0, max_attempts=3,
           region=None) -> JobInfo     inputs: {name: registry reference or path}; higher priority runs first;
                                       region: where it is placed (None = not placed yet; see platform.regions)
    set_placement(store, job_id, region, placement, *, hold=False) -> JobInfo  record a placement decision and
        its explanation (JSON); hold=True parks a queued job as `held` (no legal region; claims skip it) until a
        later placement queues it again. set_placements(store, [(id, region, placement, hold), ...]) in bulk
    claim(store, worker, *, lease_s=60, types=None) -> Claim | None
        the next runnable job (queued and past its backoff, or running with an expired lease), within the
        project's quotas; PostgreSQL: SELECT ... FOR UPDATE SKIP LOCKED, SQLite: BEGIN IMMEDIATE + conditional UPDATE
    heartbeat(store, job_id, worker, *, lease_s=60, metrics=None) -> 'ok' | 'cancel' | 'lost'
    record_output(store, job_id, worker, sha256) -> bool       the registered output, once, under the lease
    finish(store, job_id, worker, outcome) -> JobInfo | None    None when the lease was lost meanwhile
        Outcome(status='succeeded'|'failed'|'cancelled', error_type='user'|'internal'|'placement'|None, error,
        exit_code, cpu_seconds, metrics); an internal failure or a placement refusal (no live node where the job
        may run) is retried after BACKOFF_S * 2**(attempt-1) s (capped), a user error never is
    cancel(store, job_id) / retry(store, job_id) -> JobInfo; cancel_requested(store, job_id) -> bool
    release(store, job_id, worker, reason) -> JobInfo | None   a stopping worker hands its job back
    get_job(store, job_id) -> JobInfo; list_jobs(store, *, status=None, project=None, limit=50) -> list[JobInfo]
    find_job(store, job_id, *, project=None, with_attempts=False) -> (JobInfo, [AttemptInfo]) | None  one read
    attempts(store, job_id) -> list[AttemptInfo]; set_quota(store, project, *, max_concurrent=None, cpu_hours=None)
    attempt_log(store, job_id, number) -> Path                 the per-attempt log file
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Connection, and_, bindparam, case, func, insert, or_, select, update
from sqlalchemy.orm import Session

from embodia.core.errors import UserError
from embodia.platform.models import Job, JobAttempt, Project, utcnow
from embodia.platform.store import Store

JOBS, ATTEMPTS, PROJECTS = Job.__table__, JobAttempt.__table__, Project.__table__
BACKOFF_S = 5.0
MAX_BACKOFF_S = 600.0
REGION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
ErrorType = Literal["user", "internal", "cancelled", "lost", "placement"]
RETRIED_ERRORS = ("internal", "placement")  # a bug or a crash may pass; so may a region with no live node


@dataclass(frozen=True)
class JobInfo:
    """A job row as plain data."""

    id: int
    type: str
    config: dict[str, Any]
    inputs: dict[str, str]
    project: str
    priority: int
    cpus: float
    status: str
    attempts: int
    max_attempts: int
    lease_owner: str | None
    lease_expires_at: datetime | None
    heartbeat_at: datetime | None
    not_before: datetime | None
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


@dataclass(frozen=True)
class AttemptInfo:
    """One attempt of a job as plain data."""

    id: int
    job_id: int
    number: int
    worker: str
    status: str
    exit_code: int | None
    error: str | None
    error_type: str | None
    log_path: str
    metrics: dict[str, Any]
    cpu_seconds: float
    started_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class Claim:
    """A job a worker now holds: the job and the number of this attempt (1-based) with its log file."""

    job: JobInfo
    attempt: int
    log_path: Path


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended, as the worker saw it."""

    status: Literal["succeeded", "failed", "cancelled"]
    error_type: ErrorType | None = None
    error: str | None = None
    exit_code: int | None = None
    cpu_seconds: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)


_JOB_ROWS = select(*(JOBS.c[f.name] for f in fields(JobInfo)))


def _info(cls, row):
    return cls(**{f.name: getattr(row, f.name) for f in fields(cls)})


def job_info(row: Job) -> JobInfo:
    """A `jobs` row (ORM object or result row) as plain data."""
    return _info(JobInfo, row)


def _positive_finite(name: str, value: float) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise UserError(f"{name}={value!r}: expected a finite number > 0")
    return float(value)


def attempt_log(store: Store, job_id: int, number: int) -> Path:
    """Where attempt `number` of job `job_id` writes its log."""
    return store.path("logs", f"job-{job_id}", f"attempt-{number}.log")


def _check_region(region: str | None) -> str | None:
    if region is not None and not REGION_RE.match(region):
        raise UserError(f"region={region!r}: expected a region name of letters, digits, '.', '_' or '-' "
                        "(`embodia regions list` shows them)")
    return region


def submit(store: Store, type: str, config: dict[str, Any] | None = None, *, inputs: dict[str, str] | None = None,
           project: str = "default", priority: int = 0, cpus: float = 1.0, max_attempts: int = 3,
           region: str | None = None) -> JobInfo:
    """Queue a job of a registered type; it runs when a worker claims it."""
    from embodia.platform.jobtypes import job_type_names

    if type not in job_type_names():  # a clear error now, not on a worker later (the stage is not imported here)
        raise UserError(f"unknown job type {type!r}; known: {', '.join(job_type_names())}")
    if not isinstance(max_attempts, int) or not 1 <= max_attempts <= 100:
        raise UserError(f"max_attempts={max_attempts!r}: expected an integer from 1 to 100")
    if not isinstance(priority, int):
        raise UserError(f"priority={priority!r}: expected an integer (higher runs first)")
    row = Job(type=type, config=dict(config or {}), inputs={str(k): str(v) for k, v in (inputs or {}).items()},
              project=project, priority=priority, cpus=_positive_finite("cpus", cpus), max_attempts=max_attempts,
              status="queued", attempts=0, cancel_requested=False, metrics={}, cpu_seconds=0.0, created_at=utcnow(),
              region=_check_region(region))
    with store.session() as session:
        session.add(row)
        session.flush()
        return _info(JobInfo, row)


def set_placement(store: Store, job_id: int, region: str | None, placement: dict[str, Any] | None, *,
                  hold: bool = False) -> JobInfo:
    """Record where placement put a queued, held or running job and the explanation; `hold` parks a queued job
    as `held` (no legal region: never claimed until placed again), placing a held job queues it again."""
    set_placements(store, [(job_id, region, placement, hold)])
    return get_job(store, job_id)


def set_placements(store: Store, decisions: list[tuple[int, str | None, dict[str, Any] | None, bool]]) -> int:
    """`set_placement` for many jobs in one transaction (job_id, region, placement, hold); returns how many rows
    changed. Jobs that ended meanwhile are skipped when several are given, refused when one is."""
    if not decisions:
        return 0
    params = [{"p_id": job_id, "p_region": _check_region(region), "p_placement": placement,
               "p_held": bool(hold)} for job_id, region, placement, hold in decisions]
    with store.engine.begin() as conn:
        done = conn.execute(_PLACE, params).rowcount
    if len(decisions) == 1 and done != 1:
        get_job(store, decisions[0][0])  # says when it does not exist
        raise UserError(f"job {decisions[0][0]} already ended; only queued, held or running jobs are placed")
    return done


def set_quota(store: Store, project: str, *, max_concurrent: int | None = None, cpu_hours: float | None = None) -> None:
    """Limit a project's running jobs and total measured CPU time (None removes a limit)."""
    if max_concurrent is not None and (not isinstance(max_concurrent, int) or max_concurrent < 0):
        raise UserError(f"max_concurrent={max_concurrent!r}: expected an integer >= 0")
    if cpu_hours is not None and not (math.isfinite(cpu_hours) and cpu_hours >= 0):
        raise UserError(f"cpu_hours={cpu_hours!r}: expected a finite number >= 0")
    with store.session() as session:
        row = session.get(Project, project) or Project(name=project)
        row.max_concurrent, row.cpu_hours = max_concurrent, cpu_hours
        session.add(row)


def _param(name: str, column) -> Any:
    """A bound parameter typed like `column` (so UTC datetimes and JSON are converted as in the ORM)."""
    return bindparam(name, type_=column.type)


# The claim/heartbeat/finish statements are built once: SQLAlchemy then reuses their compiled form and cache
# key, which is most of the client-side cost of a claim (see benchmarks/platform_overhead.py).
_RUNNABLE = or_(and_(JOBS.c.status == "queued",
                     or_(JOBS.c.not_before.is_(None), JOBS.c.not_before <= _param("p_now", JOBS.c.not_before))),
                and_(JOBS.c.status == "running", JOBS.c.lease_expires_at < _param("p_now", JOBS.c.not_before)))
_CANDIDATE = select(JOBS.c.id, JOBS.c.status, JOBS.c.attempts, JOBS.c.max_attempts, JOBS.c.project,
                    JOBS.c.lease_owner, JOBS.c.lease_expires_at, JOBS.c.cancel_requested).where(_RUNNABLE)
_ORDER = (JOBS.c.priority.desc(), JOBS.c.id)
_CANDIDATE_ANY = _CANDIDATE.order_by(*_ORDER).limit(1)
_CANDIDATE_ANY_PG = _CANDIDATE_ANY.with_for_update(skip_locked=True)
_TAKE = update(JOBS).where(JOBS.c.id == bindparam("p_id")).values(
    status="running", attempts=bindparam("p_number"), lease_owner=bindparam("p_worker"),
    heartbeat_at=_param("p_now", JOBS.c.heartbeat_at), lease_expires_at=_param("p_expires", JOBS.c.lease_expires_at),
    started_at=func.coalesce(JOBS.c.started_at, _param("p_now", JOBS.c.started_at))).returning(*JOBS.c)
_HELD = and_(JOBS.c.id == bindparam("p_id"), JOBS.c.status == "running", JOBS.c.lease_owner == bindparam("p_worker"))
_HEARTBEAT = update(JOBS).where(_HELD).values(
    heartbeat_at=_param("p_now", JOBS.c.heartbeat_at),
    lease_expires_at=_param("p_expires", JOBS.c.lease_expires_at)).returning(JOBS.c.cancel_requested)
_PROJECTS = select(PROJECTS)
_ADD_ATTEMPT = insert(ATTEMPTS)
_JOB = select(JOBS).where(JOBS.c.id == bindparam("p_id"))
_JOB_PG = _JOB.with_for_update()
_CLOSE_ATTEMPT = update(ATTEMPTS).where(
    ATTEMPTS.c.job_id == bindparam("p_id"), ATTEMPTS.c.worker == bindparam("p_worker"),
    ATTEMPTS.c.status == "running").values(
    status=bindparam("p_status"), exit_code=bindparam("p_exit_code"), error=bindparam("p_error"),
    error_type=bindparam("p_error_type"), cpu_seconds=bindparam("p_cpu"),
    finished_at=_param("p_now", ATTEMPTS.c.finished_at), metrics=_param("p_metrics", ATTEMPTS.c.metrics))
_END_ATTEMPT = update(JOBS).where(JOBS.c.id == bindparam("p_id")).values(
    cpu_seconds=JOBS.c.cpu_seconds + bindparam("p_cpu"), lease_owner=None, lease_expires_at=None,
    metrics=_param("p_metrics", JOBS.c.metrics), error=bindparam("p_error"), error_type=bindparam("p_error_type"),
    status=bindparam("p_status"), not_before=_param("p_not_before", JOBS.c.not_before),
    finished_at=_param("p_finished", JOBS.c.finished_at)).returning(*JOBS.c)


_PLACE = update(JOBS).where(JOBS.c.id == bindparam("p_id"), or_(JOBS.c.status == "queued", JOBS.c.status == "held",
                                                                 JOBS.c.status == "running")).values(
    region=bindparam("p_region"), placement=_param("p_placement", JOBS.c.placement),
    status=case((JOBS.c.status == "running", JOBS.c.status),
                else_=case((bindparam("p_held"), "held"), else_="queued")))


def _blocked_projects(conn: Connection, now: datetime) -> tuple[set[str], set[str]]:
    """(projects at their concurrency or CPU-hours quota, projects with a concurrency limit)."""
    blocked, limited = set(), set()
    for project in conn.execute(_PROJECTS):
        if project.max_concurrent is not None:
            limited.add(project.name)
            if _running(conn, project.name, now) >= project.max_concurrent:
                blocked.add(project.name)
        if project.cpu_hours is not None:
            used = conn.execute(select(func.coalesce(func.sum(JOBS.c.cpu_seconds), 0.0))
                                .where(JOBS.c.project == project.name)).scalar()
            if used >= project.cpu_hours * 3600:
                blocked.add(project.name)
    return blocked, limited


def _running(conn: Connection, project: str, now: datetime) -> int:
    return conn.execute(select(func.count()).select_from(JOBS).where(
        JOBS.c.project == project, JOBS.c.status == "running", JOBS.c.lease_expires_at >= now)).scalar()


def _candidate(conn: Connection, now: datetime, blocked: set[str], types: list[str] | None):
    """The runnable job to take: queued and past its backoff, or running under an expired lease; highest priority,
    then oldest. On PostgreSQL rows other workers hold are skipped, not waited for."""
    postgres = conn.dialect.name == "postgresql"
    if not blocked and not types:
        query = _CANDIDATE_ANY_PG if postgres else _CANDIDATE_ANY
    else:
        query = _CANDIDATE
        if blocked:
            query = query.where(JOBS.c.project.not_in(blocked))
        if types:
            query = query.where(JOBS.c.type.in_(types))
        query = query.order_by(*_ORDER).limit(1)
        query = query.with_for_update(skip_locked=True) if postgres else query
    return conn.execute(query, {"p_now": now}).one_or_none()


def _over_concurrency(conn: Connection, project: str, now: datetime) -> bool:
    """Re-check a limited project under a lock on its row, so two claims cannot both take its last slot."""
    query = select(PROJECTS.c.max_concurrent).where(PROJECTS.c.name == project)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    limit = conn.execute(query).scalar()
    return limit is not None and _running(conn, project, now) >= limit


def _close_lost_attempt(conn: Connection, job, now: datetime) -> None:
    """The previous holder stopped heartbeating: its attempt is recorded as lost."""
    conn.execute(update(ATTEMPTS).where(ATTEMPTS.c.job_id == job.id, ATTEMPTS.c.number == job.attempts,
                                        ATTEMPTS.c.status == "running")
                 .values(status="lost", error_type="lost", finished_at=now,
                         error=f"lease of worker {job.lease_owner} expired at {job.lease_expires_at}"))


def claim(store: Store, worker: str, *, lease_s: float = 60.0, types: list[str] | None = None) -> Claim | None:
    """Take the next runnable job under a lease of `lease_s` seconds, or None when there is none."""
    lease_s = _positive_finite("lease_s", lease_s)
    while True:
        with store.engine.begin() as conn:
            now = utcnow()
            blocked, limited = _blocked_projects(conn, now)
            job = _candidate(conn, now, blocked, types)
            if job is None:
                return None
            if job.project in limited and _over_concurrency(conn, job.project, now):
                continue  # this transaction ends (releasing the row); the next sees the project as blocked
            if job.status == "running":
                _close_lost_attempt(conn, job, now)
                if job.cancel_requested or job.attempts >= job.max_attempts:
                    cancelled = bool(job.cancel_requested)
                    conn.execute(update(JOBS).where(JOBS.c.id == job.id).values(
                        status="cancelled" if cancelled else "failed", error_type="cancelled" if cancelled else "lost",
                        finished_at=now, lease_owner=None, lease_expires_at=None,
                        error="cancelled while its worker was lost" if cancelled
                        else f"its worker was lost on all {job.attempts} attempts"))
                    continue
            number = job.attempts + 1
            row = conn.execute(_TAKE, {"p_id": job.id, "p_number": number, "p_worker": worker, "p_now": now,
                                       "p_expires": now + timedelta(seconds=lease_s)}).one()
            log = attempt_log(store, job.id, number)
            conn.execute(_ADD_ATTEMPT, {"job_id": job.id, "number": number, "worker": worker, "status": "running",
                                            "log_path": str(log), "metrics": {}, "cpu_seconds": 0.0, "started_at": now})
            return Claim(job=_info(JobInfo, row), attempt=number, log_path=log)


def heartbeat(store: Store, job_id: int, worker: str, *, lease_s: float = 60.0,
              metrics: dict[str, Any] | None = None) -> Literal["ok", "cancel", "lost"]:
    """Extend the lease; says whether to go on, stop because cancellation was asked, or stop because the job
    is no longer this worker's."""
    with store.engine.begin() as conn:
        now = utcnow()
        params = {"p_id": job_id, "p_worker": worker, "p_now": now, "p_expires": now + timedelta(seconds=lease_s)}
        statement = _HEARTBEAT
        if metrics:
            current = conn.execute(select(JOBS.c.metrics).where(JOBS.c.id == job_id)).scalar() or {}
            statement = _HEARTBEAT.values(metrics={**current, **metrics})
        cancel = conn.execute(statement, params).scalar()
    if cancel is None:
        return "lost"
    return "cancel" if cancel else "ok"


def cancel_requested(store: Store, job_id: int) -> bool:
    """True when someone asked to cancel the job (what a running stage's reporter polls)."""
    with store.engine.begin() as conn:
        return bool(conn.execute(select(JOBS.c.cancel_requested).where(JOBS.c.id == job_id)).scalar())


def record_output(store: Store, job_id: int, worker: str, sha256: str) -> bool:
    """Note the job's registered output while holding its lease; False if the lease was lost."""
    with store.engine.begin() as conn:
        done = conn.execute(update(JOBS).where(_HELD).values(
            output_sha256=func.coalesce(JOBS.c.output_sha256, bindparam("p_sha"))),
            {"p_id": job_id, "p_worker": worker, "p_sha": sha256})
        return done.rowcount == 1


def backoff_s(attempt: int) -> float:
    """Delay before retry number `attempt` (1-based): BACKOFF_S doubled each time, capped."""
    return min(MAX_BACKOFF_S, BACKOFF_S * 2 ** max(attempt - 1, 0))


def _next_state(job, outcome: Outcome, now: datetime) -> dict[str, Any]:
    """Where a job goes after an attempt: queued again after a backoff (internal errors, attempts left, not
    cancelled), else the attempt's own status, final."""
    if outcome.status == "failed" and outcome.error_type in RETRIED_ERRORS and job.attempts < job.max_attempts \
            and not job.cancel_requested:
        return {"p_status": "queued", "p_not_before": now + timedelta(seconds=backoff_s(job.attempts)),
                "p_finished": None}
    return {"p_status": outcome.status, "p_not_before": None, "p_finished": now}


def finish(store: Store, job_id: int, worker: str, outcome: Outcome) -> JobInfo | None:
    """Record how an attempt ended and move the job on: done, cancelled, failed, or queued again after a backoff
    (internal errors only, while attempts remain). None when the worker no longer held the job."""
    with store.engine.begin() as conn:
        now = utcnow()
        job = conn.execute(_JOB_PG if conn.dialect.name == "postgresql" else _JOB, {"p_id": job_id}).one_or_none()
        if job is None:
            raise UserError(f"job {job_id} does not exist")
        ended = {"p_id": job_id, "p_worker": worker, "p_exit_code": outcome.exit_code, "p_error": outcome.error,
                 "p_error_type": outcome.error_type, "p_cpu": outcome.cpu_seconds, "p_now": now}
        conn.execute(_CLOSE_ATTEMPT, {**ended, "p_status": outcome.status, "p_metrics": dict(outcome.metrics)})
        if job.status != "running" or job.lease_owner != worker:
            return None
        row = conn.execute(_END_ATTEMPT, {**ended, "p_metrics": {**(job.metrics or {}), **outcome.metrics},
                                          **_next_state(job, outcome, now)}).one()
        return _info(JobInfo, row)


def release(store: Store, job_id: int, worker: str, reason: str) -> JobInfo | None:
    """Hand a held job back to the queue at once (its worker is stopping); the attempt is recorded `released` and
    does not count against the job's attempts. None when the worker no longer held it."""
    with store.session() as session:
        job = session.get(Job, job_id)
        if job is None or job.status != "running" or job.lease_owner != worker:
            return None
        session.execute(update(JobAttempt).where(JobAttempt.job_id == job_id, JobAttempt.number == job.attempts,
                                                 JobAttempt.status == "running")
                        .values(status="released", error=reason, finished_at=utcnow()))
        job.status, job.lease_owner, job.lease_expires_at, job.not_before = "queued", None, None, None
        job.max_attempts = max(job.max_attempts, job.attempts + 1)
        session.flush()
        return _info(JobInfo, job)


def cancel(store: Store, job_id: int) -> JobInfo:
    """Cancel a job: a queued one at once, a running one at its stage's next check (its worker is told)."""
    with store.session() as session:
        job = _job_row(session, job_id)
        if job.status in ("succeeded", "failed", "cancelled"):
            raise UserError(f"job {job_id} already ended ({job.status}); nothing to cancel")
        job.cancel_requested = True
        if job.status in ("queued", "held"):
            job.status, job.finished_at = "cancelled", utcnow()
        session.flush()
        return _info(JobInfo, job)


def retry(store: Store, job_id: int) -> JobInfo:
    """Queue a failed or cancelled job again (one more attempt beyond those used)."""
    with store.session() as session:
        job = _job_row(session, job_id)
        if job.status not in ("failed", "cancelled"):
            raise UserError(f"job {job_id} is {job.status}; only failed or cancelled jobs can be retried")
        job.status, job.cancel_requested, job.not_before, job.finished_at = "queued", False, None, None
        job.error, job.error_type = None, None
        job.max_attempts = max(job.max_attempts, job.attempts + 1)
        session.flush()
        return _info(JobInfo, job)


def _job_row(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise UserError(f"job {job_id} does not exist; `embodia jobs list` shows the jobs")
    return job


def get_job(store: Store, job_id: int) -> JobInfo:
    """One job."""
    with store.read_session() as session:
        return _info(JobInfo, _job_row(session, job_id))


def list_jobs(store: Store, *, status: str | None = None, project: str | None = None,
              limit: int | None = 50) -> list[JobInfo]:
    """Jobs, newest first."""
    query = _JOB_ROWS.order_by(JOBS.c.id.desc())  # plain rows, no ORM objects: the API's busiest list
    if status:
        query = query.where(JOBS.c.status == status)
    if project:
        query = query.where(JOBS.c.project == project)
    if limit:
        query = query.limit(limit)
    with store.read_session() as session:
        return [JobInfo(**row._mapping) for row in session.execute(query)]


def find_job(store: Store, job_id: int, *, project: str | None = None,
             with_attempts: bool = False) -> tuple[JobInfo, list[AttemptInfo]] | None:
    """A job (and, if asked, its attempts) read in one transaction; None when it does not exist or belongs to
    another project than `project` (the API answers both the same)."""
    with store.read_session() as session:
        job = session.get(Job, job_id)
        if job is None or (project is not None and job.project != project):
            return None
        rows = session.scalars(select(JobAttempt).where(JobAttempt.job_id == job_id)
                               .order_by(JobAttempt.number)) if with_attempts else []
        return _info(JobInfo, job), [_info(AttemptInfo, row) for row in rows]


def attempts(store: Store, job_id: int) -> list[AttemptInfo]:
    """Every attempt of a job, first first."""
    with store.read_session() as session:
        _job_row(session, job_id)
        rows = session.scalars(select(JobAttempt).where(JobAttempt.job_id == job_id).order_by(JobAttempt.number))
        return [_info(AttemptInfo, row) for row in rows]


def update_attempt_metrics(store: Store, job_id: int, number: int, metrics: dict[str, Any]) -> None:
    """Store the latest metrics of a running attempt (the job's reporter calls this, throttled)."""
    with store.session() as session:
        session.execute(update(JobAttempt).where(JobAttempt.job_id == job_id, JobAttempt.number == number)
                        .values(metrics=metrics))
