"""Run a pipeline's DAG: each step starts when its inputs are ready, up to one step per core at a time.

A step whose cache key is in the registry is a hit and reuses its artifact; `force` reruns the named steps
and everything downstream of them. A gate that blocks, or a step that fails, skips what depends on it while
independent branches finish. Stage steps are jobs of the durable queue, so each is recorded, logged per
attempt, retried after an internal error and resumed after a crash like any other job. The run starts one
worker per parallel slot (threads here) so a laptop needs nothing else running; each runs its attempts through
the run's executor: subprocesses here (the default), or tasks on a Ray cluster (`RayExecutor`), whose CPUs then
set the parallelism and each step's threads. `local_workers=False` leaves the jobs to `embodia worker` processes.
Every run is recorded in the store as it goes (`embodia.platform.runs`), so the API and console list it live.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable

from embodia.core.errors import Cancelled, UserError
from embodia.platform import registry, steps
from embodia.platform.runs import RunRecorder
from embodia.platform.stages import STAGES
from embodia.platform.worker import Executor, LocalExecutor, Worker
from embodia.platform.pipeline import (Pipeline, PlannedStep, Step, StepOutput, StepResult, cache_key,
                                       default_parallelism)
from embodia.platform.store import Store

# (step name, event, payload): events are 'start' {type, key}, 'progress' {stage event}, 'end' {StepResult}
EventCallback = Callable[[str, str, dict[str, Any]], None]


def _ignore(step: str, event: str, payload: dict[str, Any]) -> None:
    return None


@dataclass
class PipelineRunner:
    """One run (or dry run) of a pipeline against a store."""

    pipeline: Pipeline
    store: Store
    force: set[str] = field(default_factory=set)
    parallel: int = 0
    on_event: EventCallback = _ignore
    local_workers: bool = True
    executor: Executor | None = None
    origin: str = "cli"  # who started the run (cli or api), kept in its record

    def __post_init__(self) -> None:
        unknown = sorted(self.force - set(self.pipeline.steps))
        if unknown:
            raise UserError(f"--force {unknown[0]}: no such step in {self.pipeline.source} "
                            f"(steps: {', '.join(self.pipeline.order)})")
        self.forced = self.pipeline.dependents(self.force)
        self.executor = self.executor or LocalExecutor()
        self.total_cpus, self.job_cpus_max = self._capacity()
        self.parallel = self.parallel or self.total_cpus
        self.registry_outputs = self._resolve_registry_inputs()
        self.cancel = threading.Event()
        self.recorder = RunRecorder(self.store, self.pipeline, self.origin)

    def _capacity(self) -> tuple[int, int]:
        """The CPUs the run's workers use (this machine, or the Ray cluster) and the most one step's job may ask."""
        if not self.local_workers:
            return default_parallelism(), default_parallelism()
        total, largest = self.executor.capacity()
        return max(1, int(total)), max(1, int(largest))

    # ------------------------------------------------------------------------------------------ inputs
    def _resolve_registry_inputs(self) -> dict[tuple[str, str], StepOutput | None]:
        """Registry references resolved once, before anything runs; only a gate's baseline may be missing."""
        resolved: dict[tuple[str, str], StepOutput | None] = {}
        for step in self.pipeline.steps.values():
            for name, ref in step.registry_inputs.items():
                try:
                    resolved[(step.name, name)] = steps.output_of(registry.resolve(self.store, ref), ref=ref)
                except UserError as error:
                    if step.type == "gate" and name == "baseline":
                        resolved[(step.name, name)] = None
                        continue
                    raise UserError(f"{self.pipeline.source}: step {step.name!r}: inputs.{name}: {error}") from None
        return resolved

    def _inputs(self, step: Step, outputs: dict[str, StepOutput]) -> dict[str, StepOutput]:
        found = {name: outputs[source] for name, source in step.step_inputs.items()}
        for name in step.registry_inputs:
            if self.registry_outputs[(step.name, name)] is not None:
                found[name] = self.registry_outputs[(step.name, name)]
        return found

    def _key(self, step: Step, inputs: dict[str, StepOutput]) -> str:
        hashes = {name: output.sha256 for name, output in inputs.items()}
        hashes |= {name: "absent" for name in step.registry_inputs if name not in inputs}
        return cache_key(step, hashes)

    def _context(self, step: Step, threads: int) -> steps.StepContext:
        return steps.StepContext(store=self.store, pipeline=self.pipeline.name, project=self.pipeline.project,
                                 threads=threads, cancel=self.cancel,
                                 on_event=lambda event: self._event(step.name, "progress", event))

    def _event(self, step: str, event: str, payload: dict[str, Any]) -> None:
        """Record the event in the run's store record, then pass it to the caller's `on_event`."""
        self.recorder.on_event(step, event, payload)
        self.on_event(step, event, payload)

    # ------------------------------------------------------------------------------------------ dry run
    def plan(self) -> list[PlannedStep]:
        """Hits and misses without running anything; steps after a miss show as pending."""
        outputs: dict[str, StepOutput] = {}
        rows: list[PlannedStep] = []
        must_run: set[str] = set()
        for name in self.pipeline.order:
            step = self.pipeline.steps[name]
            waiting = sorted(step.needs & must_run)
            if waiting:
                rows.append(PlannedStep(name, step.type, "pending", detail=f"runs after {', '.join(waiting)}"))
                must_run.add(name)
                continue
            inputs = self._inputs(step, outputs)
            key = self._key(step, inputs)
            if name in self.forced:
                rows.append(PlannedStep(name, step.type, "forced", key, "--force"))
                must_run.add(name)
                continue
            cached = steps.probe(self._context(step, 1), step, inputs, key)
            if cached is None:
                rows.append(PlannedStep(name, step.type, "miss", key, "not in the registry"))
                must_run.add(name)
            else:
                outputs[name] = cached
                rows.append(PlannedStep(name, step.type, "hit", key, cached.ref))
        return rows

    # ------------------------------------------------------------------------------------------ run
    def begin(self) -> int:
        """Record the run in the store (state running, steps pending) and return its id; `run` calls it."""
        return self.recorder.begin()

    def run(self) -> dict[str, StepResult]:
        """Run every step (in parallel where the DAG allows); returns each step's result by name."""
        self.begin()
        self.recorder.start_heartbeat()
        results: dict[str, StepResult] | None = None
        try:
            workers = self._start_workers()
            try:
                results = self._run_dag()
            finally:
                self._stop_workers(workers)
        except BaseException as error:
            self.recorder.finish(None, error)
            raise
        self.recorder.finish(results)
        return results

    def _run_dag(self) -> dict[str, StepResult]:
        results: dict[str, StepResult] = {}
        pending = list(self.pipeline.order)
        running: dict[Future, str] = {}
        with ThreadPoolExecutor(max_workers=self.parallel, thread_name_prefix="step") as pool:
            try:
                self._schedule(pool, pending, running, results)
            except BaseException:
                self.cancel.set()  # Ctrl-C: step threads cancel their jobs before the pool waits for them
                raise
        return {name: results[name] for name in self.pipeline.order if name in results}

    def _schedule(self, pool: ThreadPoolExecutor, pending: list[str], running: dict[Future, str],
                  results: dict[str, StepResult]) -> None:
        """Start steps whose inputs are ready, up to `parallel` at once, until none is left."""
        while pending or running:
            self._skip_blocked(pending, results)
            ready = [n for n in pending if self.pipeline.steps[n].needs <= set(results)]
            slots = self.parallel - len(running)
            share = self.total_cpus // max(1, min(self.parallel, len(running) + len(ready)))
            threads = max(1, min(self.job_cpus_max, share))
            for name in ready[:max(0, slots)]:
                pending.remove(name)
                running[pool.submit(self._run_step, name, results, threads)] = name
            if not running:
                return
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                result = future.result()
                results[running.pop(future)] = result
                self._event(result.name, "end", {"result": result})

    def _start_workers(self) -> list[tuple[threading.Thread, threading.Event]]:
        """Local workers for this run's jobs, one per parallel slot, polling often (they stop with the run)."""
        if not self.local_workers:
            return []
        started = []
        for index in range(self.parallel):
            stop = threading.Event()
            worker = Worker(self.store, f"{self.pipeline.name}-{self.executor.name}-{index}-{id(self):x}",
                            poll_s=0.05, types=list(STAGES), executor=self.executor)
            thread = threading.Thread(target=worker.run, kwargs={"stop": stop}, name=f"worker-{index}", daemon=True)
            thread.start()
            started.append((thread, stop))
        return started

    def _stop_workers(self, workers: list[tuple[threading.Thread, threading.Event]]) -> None:
        for _, stop in workers:
            stop.set()
        for thread, _ in workers:
            thread.join()

    def _skip_blocked(self, pending: list[str], results: dict[str, StepResult]) -> None:
        for name in list(pending):
            stopped = [n for n in self.pipeline.steps[name].needs
                       if n in results and results[n].status in ("blocked", "skipped", "failed")]
            if stopped:
                pending.remove(name)
                cause = results[stopped[0]]
                why = "gate blocked" if cause.status == "blocked" else cause.status
                results[name] = StepResult(name, self.pipeline.steps[name].type, "skipped",
                                           message=f"not run: {stopped[0]} {why}")
                self._event(name, "end", {"result": results[name]})

    def _run_step(self, name: str, results: dict[str, StepResult], threads: int) -> StepResult:
        step = self.pipeline.steps[name]
        inputs = self._inputs(step, {n: r.output for n, r in results.items() if r.output is not None})
        key = self._key(step, inputs)
        context = self._context(step, threads)
        self._event(name, "start", {"type": step.type, "key": key, "threads": threads})
        start = time.perf_counter()
        try:
            cached = None if name in self.forced else steps.probe(context, step, inputs, key)
            output = cached or steps.execute(context, step, inputs, key)
        except steps.GateBlocked as error:
            return StepResult(name, step.type, "blocked", key=key, seconds=time.perf_counter() - start,
                              message=str(error))
        except (UserError, Cancelled) as error:
            return StepResult(name, step.type, "failed", key=key, seconds=time.perf_counter() - start,
                              message=str(error))
        except Exception as error:  # noqa: BLE001 - a bug in one step must not abandon the steps running beside it
            return StepResult(name, step.type, "failed", key=key, seconds=time.perf_counter() - start,
                              message=f"internal error (a bug, please report it): {type(error).__name__}: {error}")
        status = "cached" if cached is not None else "ran"
        if step.type == "gate" and not steps.gate_passed(output):
            return StepResult(name, step.type, "blocked", output, key, time.perf_counter() - start,
                              output.summary.get("reason", "gate blocked"))
        return StepResult(name, step.type, status, output, key, time.perf_counter() - start,
                          _message(step, output))


def _message(step: Step, output: StepOutput) -> str:
    if step.type == "gate":
        return str(output.summary.get("reason", ""))
    if step.type == "register":
        return output.ref + (" (alias moved)" if output.summary.get("alias_moved") else "")
    return output.ref
