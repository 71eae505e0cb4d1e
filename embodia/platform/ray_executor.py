"""The Ray executor: each attempt of a job runs as a Ray task on a cluster node, under the job's CPU allocation.

The queue, leases, heartbeats, retries, cancellation and lineage stay the platform's (`embodia.platform.worker`);
Ray decides only which node runs an attempt. The task receives plain data (job id, attempt, worker name,
workspace location) and starts `embodia.platform.runjob` on its node, which builds environments there (a BatchEnv
holds an unpicklable mujoco.rollout object). Thread counts and MUJOCO_GL travel in the task's runtime_env, so the
simulator's threads equal the job's Ray CPUs. A job placed in a region runs only on nodes labelled
`region=<name>`, and embodia checks that an alive node can hold it BEFORE submitting: Ray leaves a task whose
label selector or CPU request no node satisfies pending silently.

Public API:
    RayExecutor(address=None, *, num_cpus=None, grace_s=10)   connects (or starts a local Ray of num_cpus CPUs)
        .start(claim, env, log, worker) -> RayAttempt   .capacity() -> (CPUs in all, most CPUs of one node)
        .close()                                        disconnects (stopping the local Ray it started)
    alive_nodes() -> list[RayNode]; placement_refusal(job, nodes) -> str | None   why a job cannot run now
    task_options(job) -> dict                           the Ray options of a job's task (CPUs, selector, env)
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from typing import IO, Any

from embodia.core.errors import UserError
from embodia.platform import queue
from embodia.platform import worker as workers
from embodia.platform.pipeline import default_parallelism
from embodia.platform.runjob import EXIT_CANCELLED, EXIT_INTERNAL, WORKER_PID_ENV
from embodia.platform.worker import PlacementRefused, thread_env

REGION_LABEL = "region"
GL_ENV_VARS = ("MUJOCO_GL", "PYOPENGL_PLATFORM")  # the node renders the way this machine was told to
ALLOCATION_ENV_VARS = (*workers.THREAD_ENV_VARS, "EMBODIA_JOB_CPUS")
KILL_WAIT_S = 30.0
RECHECK_S = 5.0  # how often a waiting attempt checks that a live node can still take it


def ray_module(needed_by: str = "--executor ray") -> Any:
    """The `ray` module, or a one-line error saying that `needed_by` needs Ray and how to install it."""
    try:
        import ray
    except ImportError:
        raise UserError(f"{needed_by} needs Ray: install embodia[ray] (pip install 'embodia[ray]')") from None
    return ray


def task_env_vars(cpus: float) -> dict[str, str]:
    """Environment of a Ray task given `cpus` CPUs: thread counts equal to them and this machine's GL backend."""
    env_vars = {name: os.environ[name] for name in GL_ENV_VARS if name in os.environ}
    return env_vars | thread_env(cpus)


@dataclass(frozen=True)
class RayNode:
    """An alive node of the cluster as placement sees it."""

    node_id: str
    labels: dict[str, str]
    cpus: float


def alive_nodes() -> list[RayNode]:
    """The cluster's alive nodes, their labels and CPUs (a GCS query; the driver must be connected)."""
    return [RayNode(node["NodeID"], dict(node.get("Labels") or {}), float(node["Resources"].get("CPU", 0.0)))
            for node in ray_module().nodes() if node["Alive"]]


def placement_refusal(job: queue.JobInfo, nodes: list[RayNode]) -> str | None:
    """Why no alive node can run `job` now (its region has no alive node, or none with enough CPUs), else None."""
    where = f"Ray node labelled {REGION_LABEL}={job.region}" if job.region else "Ray node"
    fitting = [node for node in nodes if job.region is None or node.labels.get(REGION_LABEL) == job.region]
    if not fitting:
        regions = sorted({node.labels[REGION_LABEL] for node in nodes if REGION_LABEL in node.labels})
        return (f"job {job.id} is placed in region {job.region!r} but no alive {where} exists "
                f"(alive regions: {', '.join(regions) or 'none labelled'}); start one with "
                f"`ray start --address ... --labels {REGION_LABEL}={job.region}` or place the job elsewhere")
    largest = max(node.cpus for node in fitting)
    if largest < job.cpus:
        return (f"job {job.id} asks for {job.cpus:g} CPUs but the largest alive {where} has {largest:g}; "
                "lower the job's cpus or add a bigger node")
    return None


def task_options(job: queue.JobInfo, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Ray options for one attempt of `job`: its CPUs, its region's label selector, thread counts and MUJOCO_GL."""
    env_vars = task_env_vars(job.cpus) | {"EMBODIA_JOB_CPUS": f"{job.cpus:g}"}
    env_vars |= {name: value for name, value in (env or {}).items() if name in ALLOCATION_ENV_VARS}
    options: dict[str, Any] = {"num_cpus": job.cpus, "max_retries": 0, "retry_exceptions": False,
                               "runtime_env": {"env_vars": env_vars}, "name": f"embodia-job-{job.id}"}
    if job.region:
        options["label_selector"] = {REGION_LABEL: job.region}
    return options


def run_attempt_on_node(job_id: int, attempt: int, worker: str, env: dict[str, str], log_path: str,
                        grace_s: float) -> dict[str, Any]:
    """The body of the Ray task: run the attempt process on this node, its output appended to the attempt log.

    Returns the exit code, the CPU time used and where it ran (node id and labels)."""
    ray = ray_module()
    context = ray.get_runtime_context()
    node = {"node_id": context.get_node_id(), "node_labels": dict(context.get_node_labels())}
    cpu_before = workers.children_cpu_s()
    with open(log_path, "ab") as log:
        labels = " ".join(f"{k}={v}" for k, v in sorted(node["node_labels"].items()) if not k.startswith("ray."))
        log.write(f"== ray node {node['node_id']} ({labels or 'no labels'})\n".encode())
        log.flush()
        process_env = {**os.environ, **env, WORKER_PID_ENV: str(os.getpid()),  # it dies with this Ray worker
                       "RAY_ADDRESS": context.gcs_address}  # a sharded stage sends its shards to this cluster
        command = workers.attempt_command(job_id, attempt, worker)
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=process_env, start_new_session=True)
        try:
            code = process.wait()
        except KeyboardInterrupt:  # ray.cancel: the stage stops at a safe point and records itself cancelled
            workers.stop_process(process, grace_s)
            code = process.returncode
    return {"exit_code": code, "cpu_seconds": workers.children_cpu_s() - cpu_before, **node}


class RayAttempt:
    """An attempt running as a Ray task (the `RunningAttempt` of the worker)."""

    def __init__(self, ref: Any, job: queue.JobInfo) -> None:
        self.ref, self.job = ref, job
        self.result: dict[str, Any] = {}
        self._failure: str | None = None
        self._code: int | None = None
        self._checked = time.monotonic()

    def wait(self, timeout_s: float) -> int | None:
        if self._code is not None:
            return self._code
        ready, _ = ray_module().wait([self.ref], timeout=timeout_s)
        if not ready:
            self._recheck()
            return None
        self._code = self._collect()
        return self._code

    def _recheck(self) -> None:
        """Its region's nodes may have gone since submission: Ray would keep the task pending without a word."""
        if time.monotonic() - self._checked < RECHECK_S:
            return
        self._checked = time.monotonic()
        refusal = placement_refusal(self.job, alive_nodes())
        if refusal is not None:
            self.kill()
            raise PlacementRefused(f"{refusal} (its nodes went away while the attempt was submitted or running)")

    def _collect(self) -> int:
        ray = ray_module()
        try:
            self.result = ray.get(self.ref)
        except ray.exceptions.TaskCancelledError:
            return EXIT_CANCELLED
        except ray.exceptions.RayError as error:  # the node or its worker died: an internal failure, retried
            self._failure = f"the Ray task ended without a result: {type(error).__name__}: " \
                            f"{str(error).strip().splitlines()[0] if str(error).strip() else ''}"
            return EXIT_INTERNAL
        return int(self.result["exit_code"])

    def interrupt(self, grace_s: float) -> None:
        ray = ray_module()
        ray.cancel(self.ref, force=False)  # KeyboardInterrupt in the task: it passes SIGINT on, then kills
        if not ray.wait([self.ref], timeout=grace_s + 5.0)[0]:
            self.kill()

    def kill(self) -> None:
        ray = ray_module()
        ray.cancel(self.ref, force=True)  # kills the Ray worker; the attempt process dies with it (PDEATHSIG)
        ray.wait([self.ref], timeout=KILL_WAIT_S)

    def cpu_seconds(self) -> float:
        return float(self.result.get("cpu_seconds", 0.0))

    def failure(self) -> str | None:
        return self._failure


class RayExecutor:
    """Runs each attempt as a Ray task on the cluster at `address` (None: a local Ray of `num_cpus` CPUs)."""

    name = "ray"

    def __init__(self, address: str | None = None, *, num_cpus: int | None = None, grace_s: float = 10.0) -> None:
        self.address, self.grace_s = address, grace_s
        self._connected_here = False
        self._remote: Any = None
        self._connect(num_cpus)

    def _connect(self, num_cpus: int | None) -> None:
        ray = ray_module()
        if ray.is_initialized():
            return
        try:
            if self.address:
                ray.init(address=self.address, log_to_driver=False)
            else:
                # "local": a new Ray of our own, never one that RAY_ADDRESS or /tmp/ray/ray_current_cluster names
                ray.init(address="local", num_cpus=num_cpus or default_parallelism(), include_dashboard=False,
                         log_to_driver=False)
            self._connected_here = True
        except Exception as error:  # noqa: BLE001 - Ray raises bare Exception when its processes do not come up
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            if self.address:
                raise UserError(f"--ray-address {self.address}: could not connect: {message} "
                                "(is `ray start --head` running there?)") from None
            raise UserError(f"could not start a local Ray: {message} (is this machine overloaded? "
                            "or start one with `ray start --head` and pass --ray-address)") from None

    def start(self, claim: queue.Claim, env: dict[str, str], log: IO[bytes], worker: str) -> RayAttempt:
        """Submit the attempt as a Ray task, after checking that an alive node of the job's region can hold it."""
        refusal = placement_refusal(claim.job, alive_nodes())
        if refusal is not None:
            raise PlacementRefused(refusal)
        workspace = {name: value for name, value in env.items() if name not in ALLOCATION_ENV_VARS}
        options = task_options(claim.job, env)
        log.write(f"== submitted as Ray task: {options['num_cpus']:g} CPUs"
                  f"{', label_selector ' + str(options['label_selector']) if 'label_selector' in options else ''}\n"
                  .encode())
        log.flush()
        ref = self._task().options(**options).remote(claim.job.id, claim.attempt, worker, workspace,
                                                     str(claim.log_path), self.grace_s)
        return RayAttempt(ref, claim.job)

    def _task(self) -> Any:
        if self._remote is None:
            self._remote = ray_module().remote(run_attempt_on_node)
        return self._remote

    def capacity(self) -> tuple[float, float]:
        """(CPUs of all alive nodes, CPUs of the largest one)."""
        cpus = [node.cpus for node in alive_nodes()] or [0.0]
        return sum(cpus), max(cpus)

    def close(self) -> None:
        """Disconnect if this executor connected (a local Ray it started stops; a remote cluster keeps running)."""
        if self._connected_here:
            ray_module().shutdown()
            self._connected_here = False
