"""Job types: a name a job row carries -> the stage function a worker runs for it.

Public API:
    register_job_type(name, target, *, replace=False)   target: a callable, or 'module:function' imported on use
    get_job_type(name) -> callable with the stage contract run(config, out, *, inputs, reporter) -> Manifest
        (a stage that also takes `resume` gets resume=True when its staging directory holds files: a job's
        staging directory holds only its own earlier attempts' partial work)
    job_type_names() -> list[str]
Built in: every stage of `embodia.platform.stages` (generate, augment, train, export, evaluate, compare; generate
and evaluate run their `shards` as Ray tasks when Ray is reachable, `embodia.platform.sharding`), and
`noop` (an empty output), `sleep` (waits `seconds` in `steps`, honours cancellation, can `fail` with a user or
internal error: for tests, drills and the benchmark), `counter` (counts to `steps`, one progress file a step in
its staging directory, resuming from the last one after a crash).
Only registered names run: a job row is data, never a module path to import.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from embodia.core.atomic import atomic_write_text
from embodia.core.errors import UserError
from embodia.core.manifest import Manifest
from embodia.core.reporter import Reporter, check_cancelled, reporter_or_null
from embodia.core.stage import StageResult, run_stage
from embodia.platform.stages import STAGES

_TYPES: dict[str, Callable[..., Manifest] | str] = {
    "noop": "embodia.platform.jobtypes:noop_stage",
    "sleep": "embodia.platform.jobtypes:sleep_stage",
    "counter": "embodia.platform.jobtypes:counter_stage",
    **{name: f"{binding.module}:{binding.run}" for name, binding in STAGES.items()},  # generate, train, ...
    # the stage, its `shards` as Ray tasks when Ray is reachable (embodia.platform.sharding)
    "generate": "embodia.platform.sharding:run_generate",
    "evaluate": "embodia.platform.sharding:run_evaluate",
}


def register_job_type(name: str, target: Callable[..., Manifest] | str, *, replace: bool = False) -> None:
    """Make `name` runnable by workers (a callable, or a 'module:function' string imported when first used)."""
    if name in _TYPES and not replace and _TYPES[name] != target:
        raise ValueError(f"job type {name!r} is already registered")
    _TYPES[name] = target


def get_job_type(name: str) -> Callable[..., Manifest]:
    """The stage function of a job type."""
    target = _TYPES.get(name)
    if target is None:
        raise UserError(f"unknown job type {name!r}; known: {', '.join(job_type_names())}")
    if isinstance(target, str):
        module, _, attribute = target.partition(":")
        target = getattr(importlib.import_module(module), attribute)
        _TYPES[name] = target
    return target


def job_type_names() -> list[str]:
    """Every registered job type."""
    return sorted(_TYPES)


def _number(config: Mapping[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = config.get(key, default)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high:
        raise UserError(f"config field {key!r}={value!r}: expected a number from {low} to {high}")
    return float(value)


def noop_stage(config: Mapping[str, Any], out: str | Path, *, inputs: Mapping[str, str | Path] | None = None,
               reporter: Reporter | None = None) -> Manifest:
    """Do nothing and publish an empty output: measures the platform's own overhead."""
    return run_stage("noop", str(config.get("kind", "other")), config, out, lambda staging, rep: StageResult(),
                     inputs=inputs, reporter=reporter)


def sleep_stage(config: Mapping[str, Any], out: str | Path, *, inputs: Mapping[str, str | Path] | None = None,
                reporter: Reporter | None = None) -> Manifest:
    """Wait `seconds` in `steps` (checking for cancellation between them); `fail: user|internal` raises instead of
    finishing; `message` is written to the output (so different configs give different artifacts)."""
    seconds = _number(config, "seconds", 0.0, 0.0, 86_400.0)
    steps = int(_number(config, "steps", 1, 1, 100_000))
    fail = config.get("fail")
    if fail not in (None, "user", "internal"):
        raise UserError(f"config field 'fail'={fail!r}: expected user or internal")

    def body(staging: Path, rep: Reporter) -> StageResult:
        rep.start("sleep", steps, "steps")
        for step in range(steps):
            check_cancelled(rep, "sleep")
            time.sleep(seconds / steps)
            rep.update(step + 1, metrics={"sleep/step": step + 1})
        if fail == "user":
            raise UserError("sleep job asked to fail with a user error (config fail=user)")
        if fail == "internal":
            raise RuntimeError("sleep job asked to fail with an internal error (config fail=internal)")
        (staging / "message.txt").write_text(str(config.get("message", "")))
        rep.finish()
        return StageResult(summary={"steps": steps})

    return run_stage("sleep", str(config.get("kind", "other")), config, out, body, inputs=inputs,
                     reporter=reporter_or_null(reporter))


def counter_stage(config: Mapping[str, Any], out: str | Path, *, inputs: Mapping[str, str | Path] | None = None,
                  reporter: Reporter | None = None, resume: bool = False) -> Manifest:
    """Count to `steps`, one `progress/step-N` file a step (`step_s` apart), resuming after the last file an earlier
    attempt left in staging; `resumed_from` in the summary says where it picked up."""
    steps = int(_number(config, "steps", 10, 1, 100_000))
    step_s = _number(config, "step_s", 0.0, 0.0, 3600.0)

    def body(staging: Path, rep: Reporter) -> StageResult:
        progress = staging / "progress"
        progress.mkdir(exist_ok=True)
        done = sorted(int(p.name.split("-")[1]) for p in progress.glob("step-*"))
        start = done[-1] + 1 if done else 0
        rep.start("counter", steps, "steps")
        rep.log(f"counter: starting at step {start} of {steps}")
        for step in range(start, steps):
            check_cancelled(rep, "counter")
            time.sleep(step_s)
            atomic_write_text(progress / f"step-{step}", f"{step}\n")
            rep.update(step + 1, metrics={"counter/step": step + 1})
        rep.finish()
        return StageResult(summary={"steps": steps, "resumed_from": start})

    return run_stage("counter", str(config.get("kind", "other")), config, out, body, inputs=inputs,
                     reporter=reporter_or_null(reporter), resume=resume)
