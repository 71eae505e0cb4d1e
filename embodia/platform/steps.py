"""What each pipeline step type does: `probe` (its cached result, if any) and `execute` (do the work).

Stage steps (generate, augment, train, export, evaluate) run as jobs of the durable queue (a worker runs
each in its own process and registers its output); the step then records its cache key on that artifact.
`gate` runs the compare stage (as a job too) against a registry model and records a pass/block decision;
`register` makes a model version and moves an alias only when its gate passed; `deploy` starts (or rolls)
a supervised policy server. All of them read and write the one registry.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from embodia.core.atomic import atomic_write_json
from embodia.core.errors import Cancelled, UserError
from embodia.core.stage import StageResult, run_stage
from embodia.platform import deploy, queue, registry
from embodia.platform.pipeline import Step, StepOutput
from embodia.platform.store import Store

GATE_FILE = "gate.json"
JOB_ATTEMPTS = 2      # a pipeline step's job is retried once after an internal error (a user error never is)
JOB_POLL_S = 0.2
SHARD_COORDINATOR_CPUS = 0.25  # a step with `shards` > 1 mostly waits: its shards' Ray tasks hold the CPUs


@dataclass
class StepContext:
    """What a step needs from the run: the store, the pipeline's name, where logs go, threads, events."""

    store: Store
    pipeline: str
    project: str = "default"
    threads: int = 1
    on_event: Callable[[dict[str, Any]], None] | None = None
    cancel: threading.Event | None = None

    def run_dir(self, step: Step, key: str) -> Path:
        """Where a gate builds its decision before it moves into the artifact store."""
        path = self.store.path("runs", self.pipeline, f"{step.name}-{key[:12]}")
        path.parent.mkdir(parents=True, exist_ok=True)
        return path


def input_path(output: StepOutput) -> str:
    """What a stage reads for an input: a model artifact is its ONNX file, anything else its directory."""
    return str(model_file(output.path) if output.kind == "model" else output.path)


def output_of(info: registry.ArtifactInfo, ref: str = "") -> StepOutput:
    """A registered artifact as a step output."""
    return StepOutput(sha256=info.sha256, path=Path(info.path), kind=info.kind, ref=ref or info.ref,
                      summary=dict(info.manifest.get("summary") or {}))


# ---------------------------------------------------------------------------------------------- stage steps
def probe_stage(ctx: StepContext, step: Step, inputs: dict[str, StepOutput], key: str) -> StepOutput | None:
    """A stage step is cached when an artifact is registered under its key."""
    found = registry.find_by_cache_key(ctx.store, key)
    return output_of(found) if found is not None else None


def execute_stage(ctx: StepContext, step: Step, inputs: dict[str, StepOutput], key: str) -> StepOutput:
    """Run the stage as a queued job, then record the step's cache key on the artifact it registered."""
    config = step.effective_config()
    info = run_as_job(ctx, step.type, config, {n: input_path(o) for n, o in inputs.items()},
                      cpus=SHARD_COORDINATOR_CPUS if _shards(config) > 1 else None)
    registry.set_cache_key(ctx.store, info.sha256, key)
    return output_of(info)


def _shards(config: dict[str, Any]) -> int:
    shards = config.get("shards", 1)
    return shards if isinstance(shards, int) and not isinstance(shards, bool) else 1


def run_as_job(ctx: StepContext, stage: str, config: dict[str, Any], inputs: dict[str, str], *,
               cpus: float | None = None) -> registry.ArtifactInfo:
    """Submit one stage job and wait for it (a local or remote worker runs it); its registered output."""
    job = queue.submit(ctx.store, stage, config, inputs=inputs, project=ctx.project, cpus=cpus or ctx.threads,
                       max_attempts=JOB_ATTEMPTS)
    _emit(ctx, {"event": "job", "job": job.id})
    try:
        job = _wait_for_job(ctx, job.id)
    except BaseException:
        queue.cancel(ctx.store, job.id)
        raise
    if job.status == "succeeded":
        return registry.get_artifact(ctx.store, job.output_sha256)
    where = f"job {job.id} ({stage}, log: embodia jobs logs {job.id})"
    if job.status == "cancelled":
        raise Cancelled(f"{where} was cancelled")
    if job.error_type == "user":
        raise UserError(f"{job.error} [{where}]")
    raise RuntimeError(f"{where} failed after {job.attempts} attempt(s): {job.error}")


def _wait_for_job(ctx: StepContext, job_id: int) -> queue.JobInfo:
    """Poll the job until it ends, passing the last line of its current attempt's log on as progress."""
    shown = ""
    while True:
        job = queue.get_job(ctx.store, job_id)
        if job.status in ("succeeded", "failed", "cancelled"):
            return job
        if ctx.cancel is not None and ctx.cancel.is_set():
            raise Cancelled(f"job {job_id} cancelled with the pipeline")
        line = _last_line(queue.attempt_log(ctx.store, job_id, job.attempts)) if job.attempts else job.status
        if job.status == "held":  # no legal region now: say why (placement's reason) while waiting for one
            line = f"held: {(job.placement or {}).get('reason', 'no legal region')}"
        if line != shown:
            shown = line
            _emit(ctx, {"event": "status", "message": line, "job": job_id})
        time.sleep(JOB_POLL_S)


def _last_line(path: Path) -> str:
    """The last line of a log (its timestamp dropped), read from the file's tail only."""
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, path.stat().st_size - 4096))
            lines = handle.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return "starting"
    last = lines[-1] if lines else "starting"
    return last.split("] ", 1)[-1] if last.startswith("[") else last


def _emit(ctx: StepContext, event: dict[str, Any]) -> None:
    if ctx.on_event is not None:
        ctx.on_event(event)


# ---------------------------------------------------------------------------------------------- gate
def probe_gate(ctx: StepContext, step: Step, inputs: dict[str, StepOutput], key: str) -> StepOutput | None:
    """Cached by key; a candidate that *is* the baseline reuses the decision that promoted it."""
    found = registry.find_by_cache_key(ctx.store, key)
    if found is not None:
        return output_of(found)
    baseline, candidate = inputs.get("baseline"), inputs["candidate"]
    if baseline is None or baseline.sha256 != candidate.sha256 or not baseline.ref.startswith("model:"):
        return None
    promoted = (registry.resolve_model_version(ctx.store, baseline.ref).gate or {}).get("artifact")
    return output_of(registry.get_artifact(ctx.store, promoted)) if promoted else None


def execute_gate(ctx: StepContext, step: Step, inputs: dict[str, StepOutput], key: str) -> StepOutput:
    """Compare candidate with baseline (when one exists) and record the decision as a `gate` artifact."""
    candidate, baseline = inputs["candidate"], inputs.get("baseline")
    against = step.registry_inputs.get("baseline") or step.step_inputs.get("baseline", "")
    block_on = list(step.config.block_on)
    compare_config = {k: v for k, v in step.effective_config().items() if k != "block_on"}
    decision_inputs = {"candidate": candidate.path}
    if baseline is None:
        decision = {"passed": True, "verdict": "no-baseline", "against": against,
                    "reason": f"{against} does not exist yet, so there is nothing to regress against"}
    else:
        comparison = _run_compare(ctx, compare_config, baseline, candidate)
        verdict = str(comparison.summary.get("verdict", "unknown"))
        decision = {"passed": verdict not in block_on, "verdict": verdict, "against": against,
                    "baseline_sha256": baseline.sha256, "comparison_sha256": comparison.sha256,
                    "reason": f"compare verdict {verdict!r} vs {baseline.ref or against} "
                              f"({'blocks' if verdict in block_on else 'passes'}: block_on={block_on})"}
        decision_inputs |= {"baseline": baseline.path, "comparison": comparison.path}
    decision |= {"candidate_sha256": candidate.sha256, "block_on": block_on}

    def body(staging: Path, reporter: Any) -> StageResult:
        atomic_write_json(staging / GATE_FILE, decision)
        return StageResult(summary=decision)

    out = ctx.run_dir(step, key)
    manifest = run_stage("gate", "gate", step.effective_config(), out, body, inputs=decision_inputs)
    info = registry.register_artifact(ctx.store, out, manifest, name=f"{ctx.pipeline}.{step.name}", cache_key=key,
                                      move=True)
    return output_of(info)


def _run_compare(ctx: StepContext, config: dict[str, Any], baseline: StepOutput,
                 candidate: StepOutput) -> StepOutput:
    return output_of(run_as_job(ctx, "compare", config, {"a": input_path(baseline), "b": input_path(candidate)}))


def gate_passed(output: StepOutput) -> bool:
    """The decision a gate output records."""
    return bool(output.summary.get("passed"))


# ---------------------------------------------------------------------------------------------- register
def _existing_version(ctx: StepContext, name: str, sha256: str) -> registry.ModelVersionInfo | None:
    return next((v for v in registry.list_model_versions(ctx.store, name) if v.artifact_sha256 == sha256), None)


def _alias_target(ctx: StepContext, name: str, alias: str) -> int | None:
    try:
        return registry.get_model_version(ctx.store, name, alias).version
    except UserError:
        return None


def probe_register(ctx: StepContext, step: Step, inputs: dict[str, StepOutput], key: str) -> StepOutput | None:
    """Cached when the model already is a version of `name` and `alias` (if any, and if allowed) points at it."""
    model, config = inputs["model"], step.config
    version = _existing_version(ctx, config.name, model.sha256)
    if version is None:
        return None
    allowed = "gate" not in inputs or gate_passed(inputs["gate"])
    if config.alias and allowed and _alias_target(ctx, config.name, config.alias) != version.version:
        return None
    return _model_output(model, version, moved=False)


def execute_register(ctx: StepContext, step: Step, inputs: dict[str, StepOutput], key: str) -> StepOutput:
    """Register the model version with its report and gate record; move the alias only if the gate passed."""
    model, config = inputs["model"], step.config
    gate, report = inputs.get("gate"), inputs.get("report")
    record = dict(gate.summary) | {"artifact": gate.sha256} if gate is not None else None
    version = registry.register_model_version(ctx.store, config.name, f"sha256:{model.sha256}",
                                              report=f"sha256:{report.sha256}" if report else None, gate=record,
                                              note=config.note or f"pipeline {ctx.pipeline}, step {step.name}")
    if (record and version.gate != record) or (report and version.report_sha256 != report.sha256):
        version = registry.attach_evaluation(ctx.store, config.name, version.version, gate=record,
                                             report=f"sha256:{report.sha256}" if report else None)
    if gate is not None and not gate_passed(gate):
        raise GateBlocked(f"gate {gate.summary.get('verdict')!r}: model:{config.name}@v{version.version} "
                          f"registered, alias {config.alias!r} not moved ({gate.summary.get('reason', '')})")
    moved = False
    if config.alias and _alias_target(ctx, config.name, config.alias) != version.version:
        why = f"pipeline {ctx.pipeline}, step {step.name}" + (f": gate {record['verdict']} ({record['reason']})"
                                                               if record else "")
        version = registry.set_alias(ctx.store, config.name, config.alias, version.version, why=why)
        moved = True
    return _model_output(model, version, moved=moved)


def _model_output(model: StepOutput, version: registry.ModelVersionInfo, moved: bool) -> StepOutput:
    return StepOutput(sha256=model.sha256, path=model.path, kind="model", ref=version.ref,
                      summary={"version": version.ref, "aliases": version.aliases, "alias_moved": moved,
                               "gate": version.gate})


class GateBlocked(UserError):
    """A register step whose gate did not pass: the model version is recorded, the alias stays."""


# ---------------------------------------------------------------------------------------------- deploy
def probe_deploy(ctx: StepContext, step: Step, inputs: dict[str, StepOutput], key: str) -> StepOutput | None:
    """Cached when the deployment already serves this model and answers its health check."""
    state = deploy.current(ctx.store.home, step.config.name)
    if state is None or state.status != "healthy" or state.model_sha256 != inputs["model"].sha256:
        return None
    return _deployment_output(inputs["model"], state) if deploy.healthy(state.url) else None


def execute_deploy(ctx: StepContext, step: Step, inputs: dict[str, StepOutput], key: str) -> StepOutput:
    """Start (or roll to) a supervised server for the model and record it in the registry."""
    model, config = inputs["model"], step.config
    state = deploy.start(ctx.store, config.name, model_file(model.path), model.sha256, model_ref=model.ref,
                         host=config.host, port=config.port)
    return _deployment_output(model, state)


def _deployment_output(model: StepOutput, state: deploy.DeploymentState) -> StepOutput:
    return StepOutput(sha256=model.sha256, path=model.path, kind="deployment", ref=state.url,
                      summary={"deployment": state.name, "url": state.url, "model": state.model_ref})


def model_file(path: Path) -> Path:
    """The one ONNX file of a model artifact."""
    if path.is_file():
        return path
    found = sorted(path.rglob("*.onnx"))
    if len(found) != 1:
        raise UserError(f"{path}: expected one .onnx file in the model artifact, found {len(found)}; "
                        "deploy the output of an export step")
    return found[0]


PROBES = {"gate": probe_gate, "register": probe_register, "deploy": probe_deploy}
EXECUTES = {"gate": execute_gate, "register": execute_register, "deploy": execute_deploy}


def probe(ctx: StepContext, step: Step, inputs: dict[str, StepOutput], key: str) -> StepOutput | None:
    """The step's cached output, or None when it must run."""
    return PROBES.get(step.type, probe_stage)(ctx, step, inputs, key)


def execute(ctx: StepContext, step: Step, inputs: dict[str, StepOutput], key: str) -> StepOutput:
    """Do the step's work and return its output."""
    return EXECUTES.get(step.type, execute_stage)(ctx, step, inputs, key)
