"""Deployments: a registered model served by `embodia serve` as a supervised, health-checked process.

A deployment is a detached supervisor process (`python -m embodia.platform.deploy STATE`) that starts the
policy server on a fixed port, waits for `GET /healthz`, restarts the server whenever it dies or stops
answering, and stops it on SIGTERM. Its live state (pids, port, restarts) is a JSON file per instance under
`<workspace>/deployments/<name>/`; `current` names the instance that serves. Rolling to a new model starts a
new instance, waits for its health, switches `current`, then stops the old one.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Callable, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from embodia.core.atomic import atomic_write_text
from embodia.core.errors import UserError
from embodia.core.manifest import now_utc
from embodia.platform.models import Deployment, ModelVersion, utcnow
from embodia.platform.store import Store

Status = Literal["starting", "healthy", "restarting", "stopped", "failed"]
HEALTH_INTERVAL_S = 1.0
UNHEALTHY_CHECKS = 3           # consecutive failed /healthz answers before the server is restarted
MAX_FAILED_STARTS = 5          # consecutive starts that never became healthy before the supervisor gives up
STARTUP_TIMEOUT_S = 60.0


class DeploymentState(BaseModel):
    """One instance of a deployment: what it serves, where, and how its supervisor sees it."""

    model_config = ConfigDict(extra="forbid")
    name: str
    instance: str
    model_path: str
    model_sha256: str
    model_ref: str = Field("", description="registry reference of the served model version, e.g. model:pick:3")
    host: str = "127.0.0.1"
    port: int
    status: Status = "starting"
    supervisor_pid: int | None = None
    server_pid: int | None = None
    restarts: int = 0
    started_at: str = ""
    updated_at: str = ""
    message: str = ""

    @property
    def url(self) -> str:
        """Base URL of the policy server."""
        return f"http://{self.host}:{self.port}"


# ---------------------------------------------------------------------------------------------- state files
def deployments_root(home: str | Path) -> Path:
    """Where the deployments of a workspace keep their state files."""
    return Path(home) / "deployments"


def _state_path(home: str | Path, name: str, instance: str) -> Path:
    return deployments_root(home) / name / f"{instance}.json"


def read_state(path: str | Path) -> DeploymentState:
    """Read one instance's state file."""
    return DeploymentState.model_validate_json(Path(path).read_text())


def write_state(path: str | Path, state: DeploymentState) -> None:
    """Write one instance's state file atomically (readers never see half a file)."""
    state.updated_at = now_utc()
    atomic_write_text(path, state.model_dump_json(indent=2) + "\n")


def current(home: str | Path, name: str) -> DeploymentState | None:
    """The instance a deployment serves from, or None if the deployment never existed."""
    pointer = deployments_root(home) / name / "current"
    if not pointer.is_file():
        return None
    path = _state_path(home, name, pointer.read_text().strip())
    return _checked(read_state(path)) if path.is_file() else None


def list_deployments(home: str | Path) -> list[DeploymentState]:
    """Every deployment of the workspace (its current instance), sorted by name."""
    root = deployments_root(home)
    if not root.is_dir():
        return []
    found = (current(home, path.name) for path in sorted(root.iterdir()) if path.is_dir())
    return [state for state in found if state is not None]


def _checked(state: DeploymentState) -> DeploymentState:
    """A state whose supervisor died without saying so (SIGKILL, reboot) reads as failed, not healthy."""
    if state.status in ("stopped", "failed") or _alive(state.supervisor_pid):
        return state
    return state.model_copy(update={"status": "failed", "message": "supervisor is not running (killed?)"})


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours is not alive
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1] != "Z"
    except OSError:
        return True


# ---------------------------------------------------------------------------------------------- health
def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (kept by the deployment across restarts)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def healthy(url: str, timeout_s: float = 2.0) -> bool:
    """True when `GET url/healthz` answers 200."""
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=timeout_s) as reply:
            return reply.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait_healthy(url: str, timeout_s: float, keep_waiting: Callable[[], bool]) -> bool:
    """Poll /healthz until it answers (True), `keep_waiting()` turns False or the timeout passes (False)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and keep_waiting():
        if healthy(url, timeout_s=1.0):
            return True
        time.sleep(0.1)
    return False


# ---------------------------------------------------------------------------------------------- control
def start(store: Store, name: str, model_path: str | Path, model_sha256: str, *, model_ref: str = "",
          host: str = "127.0.0.1", port: int = 0, startup_timeout_s: float = STARTUP_TIMEOUT_S) -> DeploymentState:
    """Start a supervised server for a model under `name` and record it; returns once it is healthy.

    If `name` already serves, this is a rolling update: the old server stops only after the new one is healthy.
    """
    _check_name(name)
    home = store.home
    model_path = Path(model_path).resolve()
    if not model_path.is_file():
        raise UserError(f"deployment {name!r}: model file {model_path} does not exist")
    previous = current(home, name)
    running = previous is not None and previous.status not in ("stopped", "failed")
    state = DeploymentState(name=name, instance=uuid.uuid4().hex[:12], model_path=str(model_path),
                            model_sha256=model_sha256, model_ref=model_ref, host=host,
                            port=port or free_port(host), started_at=now_utc())
    path = _state_path(home, name, state.instance)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_state(path, state)
    supervisor = _spawn_supervisor(path)
    state = _wait_started(path, supervisor, startup_timeout_s)
    atomic_write_text(deployments_root(home) / name / "current", state.instance + "\n")
    record(store, state)
    if running:
        record(store, _stop_instance(home, previous))
    return state


def stop(store: Store, name: str, timeout_s: float = 15.0) -> DeploymentState:
    """Stop a deployment: its supervisor stops the server; recorded `stopped` in the state file and registry."""
    state = current(store.home, name)
    if state is None:
        known = ", ".join(s.name for s in list_deployments(store.home)) or "none"
        raise UserError(f"no deployment named {name!r} (deployments: {known}); see `embodia deployments list`")
    stopped = _stop_instance(store.home, state, timeout_s)
    record(store, stopped)
    return stopped


def _stop_instance(home: str | Path, state: DeploymentState, timeout_s: float = 15.0) -> DeploymentState:
    path = _state_path(home, state.name, state.instance)
    if _alive(state.supervisor_pid):
        os.kill(state.supervisor_pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _alive(state.supervisor_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
    state = read_state(path)
    if _alive(state.supervisor_pid):  # did not stop in time: take both down hard
        os.kill(state.supervisor_pid, signal.SIGKILL)
    if _alive(state.server_pid) and _is_our_server(state.server_pid, state.model_path):
        os.kill(state.server_pid, signal.SIGKILL)
    if state.status != "stopped":
        state.status, state.message = "stopped", "stopped"
        write_state(path, state)
    return state


def _is_our_server(pid: int, model_path: str) -> bool:
    """Guard against pid reuse: only signal a process whose command line is our server for this model."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"serve" in command and model_path.encode() in command


def _check_name(name: str) -> None:
    if not name or not all(ch.isalnum() or ch in "-_." for ch in name) or name.startswith("."):
        raise UserError(f"deployment name {name!r}: use letters, digits, '-', '_' or '.'")


def _spawn_supervisor(path: Path) -> subprocess.Popen:
    log = open(path.with_suffix(".log"), "ab")
    try:
        return subprocess.Popen([sys.executable, "-m", "embodia.platform.deploy", str(path)], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=_child_env())
    finally:
        log.close()


def _child_env() -> dict[str, str]:
    """The supervisor and server import the same embodia as this process, wherever it was imported from."""
    env = dict(os.environ)
    source = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (source, env.get("PYTHONPATH", "")) if p)
    return env


def _wait_started(path: Path, supervisor: subprocess.Popen, timeout_s: float) -> DeploymentState:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = read_state(path)
        if state.status == "healthy":
            return state
        if supervisor.poll() is not None or state.status == "failed":
            break
        time.sleep(0.1)
    if supervisor.poll() is None:
        supervisor.terminate()
        supervisor.wait(10)
    state = read_state(path)
    tail = path.with_suffix(".log").read_text(errors="replace")[-1500:]
    raise UserError(f"deployment {state.name!r} did not become healthy within {timeout_s:.0f} s "
                    f"({state.message or 'no answer on /healthz'}); supervisor log {path.with_suffix('.log')}:\n{tail}")


def describe(state: DeploymentState) -> dict[str, object]:
    """A deployment as plain data (for `--json` and the registry record)."""
    return json.loads(state.model_dump_json()) | {"url": state.url}



def record(store: Store, state: DeploymentState) -> None:
    """Record (or update) a deployment instance in the registry: name, model version and hash, port, status."""
    with store.session() as session:
        rows = session.scalars(select(Deployment).where(Deployment.name == state.name))
        row = next((r for r in rows if (r.config or {}).get("instance") == state.instance), None)
        if row is None:
            row = Deployment(name=state.name, model_sha256=state.model_sha256, started_at=utcnow())
            session.add(row)
        row.model_version_id = _model_version_id(session, state.model_ref)
        row.host, row.port, row.pid = state.host, state.port, state.supervisor_pid
        row.status, row.restarts = state.status, state.restarts
        row.config = {"instance": state.instance, "model_path": state.model_path, "model_ref": state.model_ref,
                      "url": state.url}
        if state.status in ("stopped", "failed") and row.stopped_at is None:
            row.stopped_at = utcnow()


def _model_version_id(session: Session, model_ref: str) -> int | None:
    """`model:NAME@vN` -> that version's row id (None for a model served without a registered version)."""
    name, _, selector = model_ref.removeprefix("model:").partition("@v")
    if not model_ref.startswith("model:") or not selector.isdigit():
        return None
    return session.scalar(select(ModelVersion.id).where(ModelVersion.name == name,
                                                        ModelVersion.version == int(selector)))

# ---------------------------------------------------------------------------------------------- supervisor
class Supervisor:
    """Keeps one server process alive and healthy on a fixed port; runs in its own detached process."""

    def __init__(self, path: Path):
        self.path = path
        self.state = read_state(path)
        self.stopping = False
        self.server: subprocess.Popen | None = None

    def run(self) -> None:
        """Start, watch and restart the server until SIGTERM; give up after repeated failed starts."""
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        self._save(supervisor_pid=os.getpid())
        failed_starts, ever_healthy = 0, False
        while not self.stopping:
            if self._start_server():
                failed_starts, ever_healthy = 0, True
                self._watch()
            else:
                failed_starts += 1
            if self.stopping:
                break
            if failed_starts >= (MAX_FAILED_STARTS if ever_healthy else 1):  # a model that never served: user error
                self._kill_server()
                self._save(status="failed", message=f"server failed to start {failed_starts} time(s) in a row; "
                                                    f"see {self.path.with_suffix('.server.log')}")
                return
            self._save(status="restarting", restarts=self.state.restarts + 1, message=self._exit_reason())
            time.sleep(min(0.5 * 2 ** failed_starts, 10.0))
        self._kill_server()
        self._save(status="stopped", server_pid=None, message="stopped")

    def _on_term(self, signum: int, frame: object) -> None:
        self.stopping = True

    def _save(self, **changes: object) -> None:
        for key, value in changes.items():
            setattr(self.state, key, value)
        write_state(self.path, self.state)

    def _start_server(self) -> bool:
        """Start the server and wait for its first healthy answer."""
        log = open(self.path.with_suffix(".server.log"), "ab")
        try:
            self.server = subprocess.Popen(
                [sys.executable, "-m", "embodia", "serve", self.state.model_path, "--host", self.state.host,
                 "--port", str(self.state.port)], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=_child_env())
        finally:
            log.close()
        self._save(status="starting", server_pid=self.server.pid)
        ok = wait_healthy(self.state.url, STARTUP_TIMEOUT_S,
                          lambda: not self.stopping and self.server.poll() is None)
        if ok:
            self._save(status="healthy", message="")
        else:
            self._kill_server()
        return ok

    def _watch(self) -> None:
        """Return when the server exits or fails UNHEALTHY_CHECKS health checks in a row (then it is killed)."""
        misses = 0
        while not self.stopping and self.server.poll() is None:
            time.sleep(HEALTH_INTERVAL_S)
            if self.stopping or self.server.poll() is not None:
                return
            misses = 0 if healthy(self.state.url) else misses + 1
            if misses >= UNHEALTHY_CHECKS:
                self._kill_server()

    def _exit_reason(self) -> str:
        code = self.server.returncode if self.server is not None else None
        return f"server exited (code {code}); restarted" if code is not None else "server unhealthy; restarted"

    def _kill_server(self) -> None:
        if self.server is None or self.server.poll() is not None:
            return
        self.server.terminate()
        try:
            self.server.wait(10)
        except subprocess.TimeoutExpired:
            self.server.kill()
            self.server.wait()


def main(argv: list[str]) -> None:
    """Entry point of the detached supervisor process: `python -m embodia.platform.deploy STATE.json`."""
    if len(argv) != 1:
        raise SystemExit("usage: python -m embodia.platform.deploy STATE.json")
    Supervisor(Path(argv[0])).run()


if __name__ == "__main__":
    main(sys.argv[1:])
