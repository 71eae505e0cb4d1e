"""serve_in_background: ephemeral ports, clean stop, and bad models refused before any thread starts."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

from embodia.core.errors import CheckpointError
from embodia.serve.server import serve_in_background


def test_background_server_listens_on_a_free_port_and_stops(model_path: Path) -> None:
    threads_before = threading.active_count()
    url, stop = serve_in_background(model_path, port=0)
    assert not url.endswith(":0")
    assert httpx.get(f"{url}/healthz").status_code == 200
    stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/healthz", timeout=1.0)
    assert threading.active_count() == threads_before


def test_bad_model_raises_in_the_caller(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="nothing.onnx does not exist"):
        serve_in_background(tmp_path / "nothing.onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_text("not onnx")
    with pytest.raises(CheckpointError, match="broken.onnx is not a valid ONNX model"):
        serve_in_background(broken)


def test_port_in_use_is_a_clear_error(model_path: Path) -> None:
    url, stop = serve_in_background(model_path, port=0)
    try:
        port = int(url.rsplit(":", 1)[1])
        with pytest.raises(ValueError, match=f"cannot listen on 127.0.0.1:{port}"):
            serve_in_background(model_path, port=port)
    finally:
        stop()


def test_listener_is_tcp_with_nodelay_so_replies_are_not_held_back() -> None:
    import socket

    from embodia.serve.server import _bind

    listener = _bind("127.0.0.1", 0)
    try:
        assert listener.proto == socket.IPPROTO_TCP  # asyncio sets TCP_NODELAY only on sockets it sees as TCP
        assert listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        listener.close()


def test_pure_python_stack_serves_the_same_actions(model_path: Path, reference, obs_batch) -> None:
    url, stop = serve_in_background(model_path, http="h11", loop="asyncio")
    try:
        reply = httpx.post(f"{url}/act", json={"obs": obs_batch.tolist()})
        assert reply.status_code == 200
        np.testing.assert_array_equal(np.asarray(reply.json()["action"], np.float32), reference.act(obs_batch))
    finally:
        stop()


@pytest.mark.slow
def test_serves_a_trained_policy_exported_by_embodia_export(tmp_path: Path) -> None:
    from embodia.learn import train
    from embodia.learn.export import export_onnx
    from embodia.learn.policy import load_policy
    from embodia.serve.client import PolicyClient

    run = train("cartpole-balance", "ppo", total_steps=512, seed=0, out=tmp_path / "runs",
                overrides={"progress": False, "tensorboard": False, "num_envs": 8, "num_steps": 32,
                           "num_minibatches": 2})
    exported = export_onnx(run, tmp_path / "policy.onnx")
    torch_policy = load_policy(run)
    url, stop = serve_in_background(exported)
    try:
        with PolicyClient(url) as client:
            assert (client.task, client.obs_dim, client.act_dim) == ("cartpole-balance", 5, 1)
            assert client.metadata()["algo"] == "ppo"
            obs = np.random.default_rng(0).normal(size=(16, 5)).astype(np.float32)
            np.testing.assert_allclose(client.act(obs), torch_policy.act(obs), atol=1e-5)
    finally:
        stop()
