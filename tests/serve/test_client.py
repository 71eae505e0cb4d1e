"""PolicyClient against a real server: HTTP act, streaming, errors, and driving a simulation as a Policy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embodia.serve.client import PolicyClient, PolicyServerError, PolicyServerUnavailable
from embodia.core.policy import OnnxPolicy
from embodia.serve.server import serve_in_background
from embodia.serve.testing import make_mlp_onnx

from .conftest import ACT_DIM, OBS_DIM


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_act_matches_in_process_policy_for_single_and_batch(asgi_url: str, reference: OnnxPolicy,
                                                            obs_batch: np.ndarray, binary: bool) -> None:
    with PolicyClient(asgi_url, binary=binary) as client:
        batch = client.act(obs_batch.astype(np.float64))
        single = client.act(obs_batch[1])
    assert batch.shape == (5, ACT_DIM) and batch.dtype == np.float32 and single.shape == (ACT_DIM,)
    np.testing.assert_array_equal(batch, reference.act(obs_batch))
    np.testing.assert_array_equal(single, reference.act(obs_batch[1:2])[0])


def test_client_is_a_policy_with_dims_from_metadata(asgi_url: str) -> None:
    with PolicyClient(asgi_url) as client:
        assert (client.obs_dim, client.act_dim, client.task) == (OBS_DIM, ACT_DIM, "toy-task")
        assert client.healthz()["status"] == "ok"
        assert 'endpoint="/metadata"' in client.metrics()


def test_refused_request_raises_with_the_server_message(asgi_url: str) -> None:
    with PolicyClient(asgi_url) as client, pytest.raises(PolicyServerError, match=r"422: .*expected \[12\]") as caught:
        client.act(np.zeros(OBS_DIM + 1))
    assert caught.value.status == 422


def test_stream_round_trip_and_error(asgi_url: str, reference: OnnxPolicy, obs_batch: np.ndarray) -> None:
    with PolicyClient(asgi_url) as client, client.stream() as stream:
        np.testing.assert_array_equal(stream.act(obs_batch[0]), reference.act(obs_batch[:1])[0])
        np.testing.assert_array_equal(stream.act(obs_batch), reference.act(obs_batch))
        with pytest.raises(PolicyServerError, match="non-finite"):
            stream.act(np.full(OBS_DIM, np.nan))
        assert stream.act(obs_batch[2]).shape == (ACT_DIM,)


def test_stream_to_a_stopped_server_raises_unavailable(model_path: Path, obs_batch: np.ndarray) -> None:
    url, stop = serve_in_background(model_path)
    with PolicyClient(url) as client, client.stream() as stream:
        assert stream.act(obs_batch[0]).shape == (ACT_DIM,)
        stop()
        with pytest.raises(PolicyServerUnavailable, match="stream closed"):
            stream.act(obs_batch[0])


def test_no_server_raises_unavailable_naming_the_url() -> None:
    with PolicyClient("http://127.0.0.1:9", timeout_s=2.0) as client, \
            pytest.raises(PolicyServerUnavailable, match="127.0.0.1:9"):
        client.act(np.zeros(OBS_DIM))
    with PolicyClient("http://127.0.0.1:9") as client, pytest.raises(PolicyServerUnavailable, match="/stream"), \
            client.stream(timeout_s=2.0):
        pass


def test_bad_url_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="must start with http"):
        PolicyClient("localhost:8000")


def test_served_policy_drives_a_batched_simulation(tmp_path: Path) -> None:
    from embodia.tasks import BatchEnv

    env = BatchEnv("cartpole-balance", num_envs=4, seed=0)
    model = make_mlp_onnx(tmp_path / "cartpole.onnx", env.obs_dim, env.action_dim, hidden=(16,),
                          task="cartpole-balance")
    in_process = OnnxPolicy(model)
    url, stop = serve_in_background(model)
    try:
        with PolicyClient(url) as client:
            obs, _ = env.reset(seed=1)
            for _ in range(5):
                actions = client.act(obs)
                np.testing.assert_array_equal(actions, in_process.act(obs.astype(np.float32)))
                obs, reward, *_ = env.step(actions)
            assert obs.shape == (4, env.obs_dim) and np.isfinite(reward).all()
    finally:
        stop()
        env.close()
