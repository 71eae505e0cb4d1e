"""Client of the embodia policy server; it is also a Policy (`act`, `obs_dim`, `act_dim`), so evaluation can
drive a served policy from a separate simulation process."""

from __future__ import annotations

import ssl
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from functools import cached_property
from typing import Self

import httpx
import numpy as np
import orjson

from embodia.core.errors import UserError
from embodia.serve.codec import (
    BINARY_TYPE,
    FLOAT32_LE,
    SHAPE_HEADER,
    decode_binary_action,
    encode_binary_obs,
    encode_json_obs,
)


class PolicyServerError(UserError):
    """The server refused a request (4xx) or failed (5xx); `status` is the HTTP status code."""

    def __init__(self, status: int, message: str):
        super().__init__(f"policy server answered {status}: {message}")
        self.status = status
        self.message = message


class PolicyServerUnavailable(UserError, ConnectionError):
    """No policy server answered at the URL (a user error: the URL or the server is wrong)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "policy server unavailable"


class PolicyClient:
    """Keep-alive HTTP client for one policy server: `act(obs)` for one (obs_dim,) or a batch (B, obs_dim).

    `token`: the bearer token of a server started with `--token-file`; `ca_file`: a PEM certificate (or CA)
    to trust for an https:// server whose certificate is not in the system store (e.g. self-signed).
    """

    def __init__(self, url: str, timeout_s: float = 10.0, binary: bool = True, token: str | None = None,
                 ca_file: str | None = None):
        self.url = url.rstrip("/")
        if not self.url.startswith(("http://", "https://")):
            raise UserError(f"policy server URL {url!r} must start with http:// or https://")
        self.binary = binary
        self._headers = {} if token is None else {"authorization": f"Bearer {token.strip()}"}
        self._tls = ssl.create_default_context(cafile=ca_file) if self.url.startswith("https://") else None
        self._http = httpx.Client(base_url=self.url, timeout=timeout_s, headers=self._headers,
                                  verify=self._tls or True)

    def act(self, obs: np.ndarray, images: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """Actions for one observation (obs_dim,) → (act_dim,) or a batch (B, obs_dim) → (B, act_dim), float32;
        a camera policy also takes `images` {key: uint8 (size, size, 3), or (B, size, size, 3) for a batch}."""
        obs = np.asarray(obs)
        if self.binary:
            body, shape = encode_binary_obs(obs, self._ordered_images(images))
            response = self._request("POST", "/act", content=body,
                                     headers={"content-type": BINARY_TYPE, SHAPE_HEADER: shape})
            return decode_binary_action(response.content, response.headers.get(SHAPE_HEADER))
        response = self._request("POST", "/act", content=encode_json_obs(obs, images),
                                 headers={"content-type": "application/json"})
        return np.asarray(orjson.loads(response.content)["action"], dtype=np.float32)

    def _ordered_images(self, images: Mapping[str, np.ndarray] | None) -> list[np.ndarray] | None:
        """The binary layout carries image blocks in the policy's `image_keys` order, without names."""
        if not images:
            return None
        missing = [key for key in self.image_keys if key not in images]
        if missing or len(images) != len(self.image_keys):
            raise ValueError(f"images have keys {sorted(images)}; the served policy takes {list(self.image_keys)}")
        return [images[key] for key in self.image_keys]

    def metadata(self) -> dict:
        """The server's observation/action spec and model identity."""
        return orjson.loads(self._request("GET", "/metadata").content)

    def healthz(self) -> dict:
        """The server's health reply (raises if it is down)."""
        return orjson.loads(self._request("GET", "/healthz").content)

    def metrics(self) -> str:
        """The server's Prometheus metrics text."""
        return self._request("GET", "/metrics").text

    @cached_property
    def spec(self) -> dict:
        """Metadata fetched once, for `obs_dim` / `act_dim`."""
        return self.metadata()

    @property
    def task(self) -> str:
        """Task the served policy was trained on."""
        return str(self.spec["task"])

    @property
    def obs_dim(self) -> int:
        """Observation size the served policy expects."""
        return int(self.spec["obs_dim"])

    @property
    def act_dim(self) -> int:
        """Action size the served policy returns."""
        return int(self.spec["act_dim"])

    @property
    def image_keys(self) -> tuple[str, ...]:
        """Camera image keys the served policy takes (empty for a state policy)."""
        return tuple(self.spec.get("image_keys") or ())

    @contextmanager
    def stream(self, timeout_s: float = 10.0) -> Iterator[PolicyStream]:
        """A WebSocket to /stream for fixed-rate control loops: one binary action frame per observation frame."""
        from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI
        from websockets.sync.client import connect

        ws_url = "ws" + self.url[len("http"):] + "/stream"
        with ExitStack() as stack:
            try:
                connection = stack.enter_context(connect(ws_url, open_timeout=timeout_s, max_size=None,
                                                         compression=None, additional_headers=self._headers,
                                                         ssl=self._tls))
            except InvalidStatus as error:
                status = error.response.status_code
                hint = "; pass the server's token (PolicyClient(url, token=...))" if status in (401, 403) else ""
                raise PolicyServerError(status, f"the server refused the stream at {ws_url}{hint}") from error
            except (OSError, InvalidHandshake, InvalidURI) as error:
                raise PolicyServerUnavailable(f"cannot open a stream to {ws_url} ({error}); is `embodia serve` "
                                              "running there?") from error
            yield PolicyStream(connection, timeout_s, self)

    def close(self) -> None:
        """Close the keep-alive connection."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as error:
            raise PolicyServerUnavailable(f"no policy server answered at {self.url}{path} ({error}); start one with "
                                          "`embodia serve MODEL.onnx --port PORT`") from error
        if response.status_code >= 400:
            raise PolicyServerError(response.status_code, _error_message(response.content))
        return response


class PolicyStream:
    """An open /stream WebSocket: `act(obs)` sends float32 observations and waits for their actions."""

    def __init__(self, connection, timeout_s: float, client: PolicyClient):
        self._connection = connection
        self._timeout_s = timeout_s
        self._client = client

    def act(self, obs: np.ndarray, images: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """Actions for one observation (obs_dim,) → (act_dim,) or a batch (k, obs_dim) → (k, act_dim) [with
        `images` as for `PolicyClient.act`]."""
        from websockets.exceptions import ConnectionClosed

        obs = np.asarray(obs)
        frame = encode_binary_obs(obs, self._client._ordered_images(images))[0]
        try:
            self._connection.send(frame)
            reply = self._connection.recv(timeout=self._timeout_s)
        except ConnectionClosed as error:
            raise PolicyServerUnavailable(f"the policy stream closed ({error}); reopen it with "
                                          "PolicyClient.stream()") from error
        if isinstance(reply, str):
            error = orjson.loads(reply)
            raise PolicyServerError(int(error.get("status", 400)), error.get("error", reply))
        actions = np.frombuffer(reply, dtype=FLOAT32_LE).astype(np.float32)
        return actions if obs.ndim == 1 else actions.reshape(obs.shape[0], -1)


def _error_message(content: bytes) -> str:
    try:
        return str(orjson.loads(content)["error"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return content[:200].decode("utf-8", "replace")
