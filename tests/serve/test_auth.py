"""Bearer-token auth (`embodia serve --token-file`): every endpoint but /healthz needs the token."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from embodia.core.errors import ConfigError
from embodia.core.policy import OnnxPolicy
from embodia.serve.auth import read_token
from embodia.serve.client import PolicyClient, PolicyServerError
from embodia.serve.server import serve_in_background

from .conftest import OBS_DIM

TOKEN = "s3cret-token-0123456789abcdef"


@pytest.fixture(scope="module", params=["asgi", "fastapi"])
def secured_url(request: pytest.FixtureRequest, model_path: Path, tmp_path_factory: pytest.TempPathFactory):
    """A live server per framework that requires TOKEN."""
    token_file = tmp_path_factory.mktemp("auth") / "token"
    token_file.write_text(f"{TOKEN}\n")
    url, stop = serve_in_background(model_path, framework=request.param, token_file=token_file)
    yield url
    stop()


def test_requests_without_or_with_a_wrong_token_get_401(secured_url: str, obs_batch: np.ndarray) -> None:
    body = {"obs": obs_batch[0].tolist()}
    for headers in ({}, {"authorization": "Bearer wrong-token-0123456789abcd"}, {"authorization": TOKEN},
                    {"authorization": f"Basic {TOKEN}"}):
        reply = httpx.post(f"{secured_url}/act", json=body, headers=headers)
        assert reply.status_code == 401 and "bearer token" in reply.json()["error"]
        assert reply.headers["www-authenticate"].startswith("Bearer")
    for path in ("/metadata", "/metrics"):
        assert httpx.get(f"{secured_url}{path}").status_code == 401


def test_the_right_token_is_served_and_healthz_stays_open(secured_url: str, reference: OnnxPolicy,
                                                          obs_batch: np.ndarray) -> None:
    assert httpx.get(f"{secured_url}/healthz").json()["status"] == "ok"
    reply = httpx.post(f"{secured_url}/act", json={"obs": obs_batch.tolist()},
                       headers={"authorization": f"bearer {TOKEN}"})
    assert reply.status_code == 200
    np.testing.assert_array_equal(np.asarray(reply.json()["action"], np.float32), reference.act(obs_batch))
    metrics = httpx.get(f"{secured_url}/metrics", headers={"authorization": f"Bearer {TOKEN}"}).text
    assert 'embodia_requests_total{endpoint="/act",status="401"}' in metrics


def test_client_with_the_token_acts_and_streams_and_without_it_is_refused(secured_url: str, reference: OnnxPolicy,
                                                                          obs_batch: np.ndarray) -> None:
    with PolicyClient(secured_url, token=TOKEN) as client, client.stream() as stream:
        np.testing.assert_array_equal(client.act(obs_batch), reference.act(obs_batch))
        np.testing.assert_array_equal(stream.act(obs_batch), reference.act(obs_batch))
    with PolicyClient(secured_url) as client:
        with pytest.raises(PolicyServerError, match="401"):
            client.act(np.zeros(OBS_DIM))
        with pytest.raises(PolicyServerError, match="refused the stream.*token"), client.stream():
            pass


@pytest.mark.parametrize(("content", "needle"), [
    (None, "does not exist"),
    ("short", "at least 16 printable characters"),
    ("two words but long enough", "one word"),
    ("caf\u00e9-token-0123456789", "non-ASCII"),
])
def test_bad_token_files_are_refused_naming_the_file(tmp_path: Path, content: str | None, needle: str) -> None:
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=needle) as caught:
        read_token(path)
    assert "--token-file" in str(caught.value) and str(path) in str(caught.value)
