"""Deployments: a supervised policy server that is health-checked, restarted when killed, rolled and stopped."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from embodia.core.errors import UserError
from embodia.core.manifest import hash_file
from sqlalchemy import select

from embodia.platform import deploy
from embodia.platform.models import Deployment
from embodia.platform.store import Store, open_store
from embodia.serve.testing import make_mlp_onnx


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two tiny ONNX policies with different weights (old and new version)."""
    root = tmp_path_factory.mktemp("deploy-models")
    return tuple(make_mlp_onnx(root / f"v{seed}.onnx", 4, 2, hidden=(8,), task="toy", action_low=-1,
                               action_high=1, seed=seed) for seed in (1, 2))


def _act(url: str) -> list:
    request = urllib.request.Request(f"{url}/act", data=json.dumps({"obs": [0.1, 0.2, 0.3, 0.4]}).encode(),
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as reply:
        return json.loads(reply.read())["action"]


def _wait_for(condition, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def _recorded(store: Store) -> list[Deployment]:
    with store.session() as session:
        return list(session.scalars(select(Deployment).order_by(Deployment.id)))


@pytest.mark.slow
def test_killed_server_is_restarted_then_rolled_and_stopped(store: Store, models: tuple[Path, Path]) -> None:
    old, new = models
    home = store.home
    state = deploy.start(store, "toy", old, hash_file(old), model_ref="model:toy@v1")
    try:
        assert state.status == "healthy" and deploy.healthy(state.url)
        first_action = _act(state.url)
        os.kill(state.server_pid, signal.SIGKILL)  # the server dies for real
        _wait_for(lambda: (s := deploy.current(home, "toy")).restarts == 1 and s.status == "healthy")
        restarted = deploy.current(home, "toy")
        assert restarted.server_pid != state.server_pid and restarted.port == state.port
        assert _act(restarted.url) == first_action

        deploy.record(store, restarted)
        [row] = _recorded(store)
        assert (row.model_sha256, row.port, row.restarts, row.status) == (hash_file(old), state.port, 1, "healthy")

        rolled = deploy.start(store, "toy", new, hash_file(new), model_ref="model:toy@v2")
        assert rolled.instance != state.instance and deploy.healthy(rolled.url)
        assert deploy.current(home, "toy").model_sha256 == hash_file(new)
        assert not deploy.healthy(state.url)  # the old server was stopped after the new one was healthy
        assert _act(rolled.url) != first_action
        [listed] = deploy.list_deployments(home)
        assert listed.instance == rolled.instance and listed.status == "healthy"
    finally:
        stopped = deploy.stop(store, "toy")
    assert stopped.status == "stopped" and not deploy.healthy(stopped.url)
    assert not deploy._alive(stopped.supervisor_pid)
    assert [(r.model_sha256, r.status) for r in _recorded(store)] == [(hash_file(old), "stopped"),
                                                                        (hash_file(new), "stopped")]


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Store:
    opened = open_store(tmp_path / "ws", f"sqlite:///{tmp_path / 'embodia.db'}")
    yield opened
    opened.close()


def test_stop_unknown_deployment_names_the_known_ones(sqlite_store: Store) -> None:
    with pytest.raises(UserError, match="no deployment named 'nope'"):
        deploy.stop(sqlite_store, "nope")


def test_missing_model_and_bad_name_are_user_errors(sqlite_store: Store, models: tuple[Path, Path]) -> None:
    with pytest.raises(UserError, match="does not exist"):
        deploy.start(sqlite_store, "toy", sqlite_store.home / "missing.onnx", "0" * 64)
    with pytest.raises(UserError, match="deployment name"):
        deploy.start(sqlite_store, "bad name/..", models[0], "0" * 64)


def test_bad_model_fails_with_the_supervisor_log(sqlite_store: Store) -> None:
    broken = sqlite_store.home / "broken.onnx"
    broken.write_bytes(b"not onnx")
    with pytest.raises(UserError, match="did not become healthy"):
        deploy.start(sqlite_store, "broken", broken, "0" * 64, startup_timeout_s=20)
