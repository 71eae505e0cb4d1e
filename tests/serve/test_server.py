"""serve_in_background: ephemeral ports, clean stop, and bad models refused before any thread starts."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

from embodia.core.errors import CheckpointError, UserError
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
    from embodia.learn.train import train
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


def _self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A throwaway key and certificate for 127.0.0.1, made with the openssl CLI."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        raise RuntimeError("the openssl command is needed for the TLS test (apt-get install openssl)")
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return key, cert


@pytest.mark.parametrize("framework", ["asgi", "fastapi"])
def test_tls_serves_https_and_wss_with_the_given_certificate(tmp_path: Path, model_path: Path, reference,
                                                             obs_batch, framework: str) -> None:
    from embodia.serve.client import PolicyClient

    key, cert = _self_signed_cert(tmp_path)
    url, stop = serve_in_background(model_path, framework=framework, ssl_keyfile=key, ssl_certfile=cert)
    try:
        assert url.startswith("https://127.0.0.1:")
        with PolicyClient(url, ca_file=str(cert)) as client, client.stream() as stream:
            np.testing.assert_array_equal(client.act(obs_batch), reference.act(obs_batch))
            np.testing.assert_array_equal(stream.act(obs_batch[0]), reference.act(obs_batch[:1])[0])
        with pytest.raises(httpx.ConnectError):  # not trusted without the certificate
            httpx.get(f"{url}/healthz")
        with pytest.raises(httpx.RemoteProtocolError):  # plain HTTP is not answered on a TLS port
            httpx.get(url.replace("https", "http", 1) + "/healthz")
    finally:
        stop()


def test_tls_needs_both_files_and_valid_ones(tmp_path: Path, model_path: Path) -> None:
    from pydantic import ValidationError

    key, cert = _self_signed_cert(tmp_path)
    with pytest.raises(ValidationError, match="both --ssl-keyfile and --ssl-certfile"):
        serve_in_background(model_path, ssl_certfile=cert)
    with pytest.raises(UserError, match="cannot use --ssl-keyfile"):
        serve_in_background(model_path, ssl_keyfile=cert, ssl_certfile=key)


def test_wildcard_host_reports_every_reachable_address_and_each_answers(model_path: Path) -> None:
    from embodia.serve.server import reachable_urls

    url, stop = serve_in_background(model_path, host="0.0.0.0")
    try:
        port = int(url.rsplit(":", 1)[1])
        urls = reachable_urls("0.0.0.0", port)
        assert urls[0] == url == f"http://127.0.0.1:{port}" and all("0.0.0.0" not in u for u in urls)
        for each in urls:
            assert httpx.get(f"{each}/healthz", timeout=5).status_code == 200
    finally:
        stop()
    assert reachable_urls("10.1.2.3", 8000, "https") == ["https://10.1.2.3:8000"]
