"""API tokens: the server's token cache (no database work per request) never outlives a revocation it is told
of, expires on its own for one it is not, and keeps only successes; server settings for worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from embodia.core.errors import ConfigError, UserError
from embodia.platform.api.app import SETTINGS_ENV, ServerSettings, create_app
from embodia.platform.api.auth import TokenCache, create_token, revoke_token
from embodia.platform.deploy import free_port


def _h(token):
    return {"Authorization": f"Bearer {token}"}


def test_a_token_revoked_through_the_servers_cache_is_refused_at_once(store):
    client = TestClient(create_app(store), raise_server_exceptions=False)
    secret = create_token(store, "alpha", "read")
    assert client.get("/api/v1/project", headers=_h(secret)).status_code == 200  # now cached
    revoke_token(store, secret, client.app.state.tokens)
    reply = client.get("/api/v1/project", headers=_h(secret))
    assert reply.status_code == 401 and "revoked" in reply.json()["error"]


def test_a_token_revoked_elsewhere_lives_on_only_while_cached(store):
    client = TestClient(create_app(store), raise_server_exceptions=False)
    client.app.state.tokens = TokenCache(ttl_s=3600)
    secret = create_token(store, "alpha", "read")
    assert client.get("/api/v1/project", headers=_h(secret)).status_code == 200
    revoke_token(store, secret)  # another process: this server's cache is not told
    assert client.get("/api/v1/project", headers=_h(secret)).status_code == 200
    client.app.state.tokens.ttl_s = 0.0  # the entry has expired
    assert client.get("/api/v1/project", headers=_h(secret)).status_code == 401


def test_unknown_tokens_are_not_cached_and_scopes_stay_exact(store):
    app = create_app(store)
    client = TestClient(app, raise_server_exceptions=False)
    assert client.get("/api/v1/project", headers=_h("emb_" + "0" * 64)).status_code == 401
    assert app.state.tokens._entries == {}
    reader = create_token(store, "alpha", "read")
    assert client.get("/api/v1/jobs", headers=_h(reader)).status_code == 200
    assert client.post("/api/v1/jobs/1/cancel", headers=_h(reader)).status_code == 403  # cached caller, same scope
    other = create_token(store, "beta", "admin")
    assert client.get("/api/v1/project", headers=_h(other)).json()["name"] == "beta"


def test_revoking_an_unknown_token_is_a_user_error(store):
    with pytest.raises(UserError, match="no such API token"):
        revoke_token(store, "emb_nope")


def test_server_settings_travel_through_the_environment_and_bad_ones_are_named(monkeypatch):
    monkeypatch.setenv(SETTINGS_ENV, ServerSettings(max_body_bytes=1024, rate_per_minute=7).to_env())
    assert ServerSettings.from_env() == ServerSettings(max_body_bytes=1024, rate_per_minute=7)
    for bad in ('{"rate_per_minute": -1}', '{"nope": 1}', "not json", '{"max_body_bytes": 1.5}'):
        monkeypatch.setenv(SETTINGS_ENV, bad)
        with pytest.raises(ConfigError, match=SETTINGS_ENV):
            ServerSettings.from_env()


@pytest.mark.slow
def test_server_with_two_worker_processes_authenticates_and_isolates(sqlite_store, tmp_path):
    alpha, beta = create_token(sqlite_store, "alpha", "read"), create_token(sqlite_store, "beta", "read")
    port = free_port()
    env = {**os.environ, "EMBODIA_HOME": str(sqlite_store.home), "EMBODIA_DB_URL": sqlite_store.url}
    server = subprocess.Popen([sys.executable, "-m", "embodia", "server", "--port", str(port), "--workers", "2"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}/api/v1"
        deadline = time.monotonic() + 90
        while True:
            try:
                reply = httpx.get(base + "/project", headers=_h(alpha), timeout=5)
                break
            except httpx.HTTPError:
                assert server.poll() is None and time.monotonic() < deadline, server.stderr.read().decode()[-2000:]
                time.sleep(0.5)
        assert reply.json()["name"] == "alpha"
        names = {httpx.get(base + "/project", headers=_h(beta), timeout=5).json()["name"] for _ in range(20)}
        assert names == {"beta"}  # every process answers for the caller's own project only
        assert httpx.get(base + "/project", timeout=5).status_code == 401
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
