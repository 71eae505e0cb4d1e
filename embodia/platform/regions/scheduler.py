"""Placement against the workspace: queued jobs in, decisions and explanations recorded on the job rows.

The catalog and policy of a workspace are `<home>/regions/catalog.yaml` and `policy.yaml` when present, else the
shipped defaults (or files given explicitly). Which regions are down is workspace state in
`<home>/regions/status.json` (written atomically), layered over the catalog's own `status`.
What placement knows of a job comes from the store: its type (-> needs, by the policy), project, priority, and
its registry inputs: their jurisdiction tags (residency), total size (egress) and where they live (the region
the job that made them ran in, else the home region).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from embodia.core.atomic import atomic_write_json
from embodia.core.errors import UserError
from embodia.core.stage import staging_dir
from embodia.platform import queue
from embodia.platform.models import Job
from embodia.platform.regions.catalog import DEFAULT_CATALOG, Catalog, load_catalog
from embodia.platform.regions.placement import (
    HELD,
    PLACED,
    Decision,
    FleetState,
    JobSpec,
    Method,
    build_problem,
    job_batch,
    place,
)
from embodia.platform.regions.policy import DEFAULT_POLICY, PlacementPolicy, load_policy
from embodia.platform.runjob import has_partial_work, job_output_dir
from embodia.platform.store import Store

PLACEABLE = ("queued", "held")


@dataclass
class Rules:
    """A workspace's catalog (with its up/down state applied) and policy."""

    catalog: Catalog
    policy: PlacementPolicy


def _status_file(store: Store) -> Path:
    return store.path("regions", "status.json")


def region_status(store: Store) -> dict[str, str]:
    """Regions marked up or down in this workspace (overrides of the catalog's status)."""
    path = _status_file(store)
    if not path.is_file():
        return {}
    try:
        status = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UserError(f"{path}: unreadable region status ({error}); delete it to reset every region to the "
                        "catalog's status") from None
    if not isinstance(status, dict) or not all(v in ("up", "down") for v in status.values()):
        raise UserError(f"{path}: expected a mapping of region name to 'up' or 'down'; delete it to reset")
    return status


def load_rules(store: Store, catalog_path: str | Path | None = None,
               policy_path: str | Path | None = None) -> Rules:
    """The catalog and policy in force for this workspace, with its region up/down state applied."""
    local = store.path("regions")
    catalog_path = catalog_path or (local / "catalog.yaml" if (local / "catalog.yaml").is_file() else DEFAULT_CATALOG)
    policy_path = policy_path or (local / "policy.yaml" if (local / "policy.yaml").is_file() else DEFAULT_POLICY)
    catalog = load_catalog(catalog_path)
    status = {name: value for name, value in region_status(store).items() if name in catalog.names}
    catalog = catalog.with_status(status)
    return Rules(catalog=catalog, policy=load_policy(policy_path, catalog))


def set_region_status(store: Store, rules: Rules, name: str, status: str) -> None:
    """Mark a region up or down in this workspace (the name is checked against the catalog)."""
    rules.catalog.region(name)
    current = region_status(store)
    current[name] = status
    atomic_write_json(_status_file(store), current)
    rules.catalog = rules.catalog.with_status({name: status})


# ----------------------------------------------------------------------------------------------- jobs -> specs


def _input_facts(store: Store, jobs: list[queue.JobInfo]) -> dict[str, tuple[frozenset[str], float, str | None]]:
    """For every registry input of `jobs`: (jurisdiction tags, size in GB, region it lives in or None)."""
    from embodia.platform import registry

    refs = {ref for job in jobs for ref in job.inputs.values()}
    facts: dict[str, tuple[frozenset[str], float, str | None]] = {}
    for ref in refs:
        try:
            info = registry.resolve(store, ref)
        except UserError:
            continue  # a path, not a registry reference: no residency tag, lives at home
        facts[ref] = (info.jurisdictions, info.size / 1e9, None)
        if info.creator_job_id is not None:
            with store.session() as session:
                region = session.scalar(select(Job.region).where(Job.id == info.creator_job_id))
            facts[ref] = (info.jurisdictions, info.size / 1e9, region)
    return facts


def job_specs(store: Store, jobs: list[queue.JobInfo], rules: Rules) -> list[JobSpec]:
    """What placement needs to know of each job (see the module docstring); a CPU-only job's `cpus` is its count."""
    catalog = rules.catalog
    facts = _input_facts(store, jobs)
    specs = []
    for job in jobs:
        known = [facts[ref] for ref in job.inputs.values() if ref in facts]
        tags = frozenset().union(*(tags for tags, _, _ in known))
        sizes = [(gb, region) for _, gb, region in known]
        biggest = max(sizes, default=(0.0, None))[1]  # egress is charged from where most of the data lives
        data_region = biggest if biggest in catalog.names else None
        cpu_only = rules.policy.needs(job.type).kinds == ["cpu"]
        cpus = int(np.ceil(job.cpus)) if cpu_only and job.cpus != 1.0 else None
        specs.append(JobSpec(id=job.id, type=job.type, project=job.project, jurisdictions=tags,
                             data_gb=sum(gb for gb, _ in sizes), data_region=data_region, priority=job.priority,
                             count=cpus))
    return specs


def fleet_state(store: Store, rules: Rules, exclude: set[int] = frozenset()) -> FleetState:
    """Units in use by running jobs per (region, kind), tenants' spend and accelerators held, from the store."""
    state = FleetState.empty(rules.catalog)
    names, kinds = rules.catalog.names, rules.catalog.kinds
    with store.session() as session:
        rows = session.execute(select(Job.id, Job.status, Job.project, Job.region, Job.placement)
                               .where(Job.region.is_not(None))).all()
    for job_id, status, project, region, placement in rows:
        if job_id in exclude or not placement or region not in names:
            continue
        cost = float((placement.get("cost_usd") or {}).get("total", 0.0))
        state.spent_usd[project] = state.spent_usd.get(project, 0.0) + cost
        kind, units = placement.get("kind"), float(placement.get("needs", {}).get("units", 0))
        if status == "running" and kind in kinds:
            state.free[names.index(region), kinds.index(kind)] -= units
            if kind != "cpu":
                state.accelerators_held[project] = state.accelerators_held.get(project, 0.0) + units
    np.maximum(state.free, 0, out=state.free)
    return state


# ----------------------------------------------------------------------------------------------- placing


def place_jobs(store: Store, rules: Rules, jobs: list[queue.JobInfo], *, method: Method = "auto",
               record: bool = True) -> Decision | None:
    """Place `jobs` (queued or held) together and record each decision and explanation on its row."""
    if not jobs:
        return None
    specs = job_specs(store, jobs, rules)
    state = fleet_state(store, rules, exclude={job.id for job in jobs})
    problem = build_problem(job_batch(specs, rules.catalog, rules.policy), rules.catalog, rules.policy, state)
    decision = place(problem, method=method)
    if record:
        record_decision(store, decision)
    return decision


def record_decision(store: Store, decision: Decision) -> int:
    """Write every job's region (None when not placed), explanation, and held state, in one transaction."""
    names = decision.problem.catalog.names
    region, outcome = decision.region, decision.assignment.outcome
    rows = [(int(job_id), names[region[j]] if outcome[j] == PLACED else None, decision.explain(j),
             bool(outcome[j] == HELD)) for j, job_id in enumerate(decision.problem.batch.ids)]
    return queue.set_placements(store, rows)


def place_queued(store: Store, rules: Rules, *, method: Method = "auto", project: str | None = None) -> Decision | None:
    """Place every queued and held job of the workspace (or of one project) as one batch."""
    jobs = [job for status in PLACEABLE for job in queue.list_jobs(store, status=status, project=project, limit=None)]
    return place_jobs(store, rules, sorted(jobs, key=lambda job: job.id), method=method)


def explain_job(store: Store, rules: Rules, job_id: int) -> dict[str, Any]:
    """The recorded placement explanation of a job, or (not yet placed) what placement would decide now."""
    job = queue.get_job(store, job_id)
    if job.placement:
        return job.placement
    if job.status not in PLACEABLE:
        raise UserError(f"job {job_id} is {job.status} and was never placed; only queued jobs have a placement "
                        "to explain (`embodia place run` places them)")
    decision = place_jobs(store, rules, [job], record=False)
    return {**decision.explain(0), "note": "not placed yet: what `embodia place run` would decide now, alone"}


def _affected(store: Store, region: str) -> tuple[list[queue.JobInfo], list[queue.JobInfo]]:
    """Jobs of a region: (queued ones and running ones with a checkpoint, running ones without), one query.
    A running job is checkpointed when its stage left partial work (checkpoints) in its staging output, the same
    check `runjob` uses to resume it, so whichever worker claims it next continues from there."""
    with store.session() as session:
        rows = session.scalars(select(Job).where(Job.region == region, Job.status.in_(("queued", "running")))
                               .order_by(Job.id))
        jobs = [queue.job_info(row) for row in rows]
    can_move = [job.status == "queued" or has_partial_work(job_output_dir(store, job.id)) for job in jobs]
    return ([job for job, ok in zip(jobs, can_move) if ok], [job for job, ok in zip(jobs, can_move) if not ok])


def fail_region(store: Store, rules: Rules, name: str, *, method: Method = "auto") -> dict[str, Any]:
    """Mark a region down and re-place its queued and running-but-checkpointed jobs elsewhere within the rules
    (a running one is released by its worker's lease and resumes from its checkpoint), or hold them with the
    reason when no legal region is left. Running jobs without a checkpoint are listed with the reason, not moved
    (their lease expiring retries them from the start)."""
    set_region_status(store, rules, name, "down")
    movable, stuck = _affected(store, name)
    for job in movable:
        if job.status == "running":
            queue.release(store, job.id, job.lease_owner or "", f"region {name} went down; resuming elsewhere from "
                                                                 f"its checkpoint in {_staging(store, job.id)}")
    released = {job.id for job in movable if job.status == "running"}
    movable = [queue.get_job(store, job.id) if job.id in released else job for job in movable]
    decision = place_jobs(store, rules, movable, method=method)
    counts = decision.counts() if decision else {"placed": 0, "held": 0, "waiting": 0}
    return {"region": name, "moved": len(movable), **counts, "running_without_checkpoint": [j.id for j in stuck],
            "not_moved": {j.id: f"running with no checkpoint in {_staging(store, j.id)}; not moved, retried from "
                                "the start when its lease expires" for j in stuck}}


def _staging(store: Store, job_id: int) -> Path:
    """Where a job's stage keeps its partial work (checkpoints) between attempts."""
    return staging_dir(job_output_dir(store, job_id))


def restore_region(store: Store, rules: Rules, name: str, *, method: Method = "auto") -> dict[str, Any]:
    """Mark a region up again and re-place held and waiting jobs (some may now have a legal region)."""
    set_region_status(store, rules, name, "up")
    decision = place_queued(store, rules, method=method)
    return {"region": name, **(decision.counts() if decision else {"placed": 0, "held": 0, "waiting": 0})}
