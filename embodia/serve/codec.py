"""Wire formats of the policy server: JSON and raw float32 bodies, checked against the policy spec.

JSON: `{"obs": [..obs_dim..]}` or `{"obs": [[..], ..]}` → `{"action": ...}` of the same rank.
Binary (`application/octet-stream`): little-endian float32 values, row-major, with the header
`x-embodia-shape: obs_dim` (one observation) or `batch,obs_dim`; without the header the body is a batch.
"""

from __future__ import annotations

import math

import numpy as np
import orjson

JSON_TYPE = "application/json"
BINARY_TYPE = "application/octet-stream"
SHAPE_HEADER = "x-embodia-shape"
FLOAT32_LE = np.dtype("<f4")


class RequestError(ValueError):
    """A request the server refuses; `status` is the HTTP status code sent back with the message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def error_body(status: int, message: str) -> bytes:
    """The JSON body of an error reply."""
    return orjson.dumps({"error": message, "status": status})


def decode_json_obs(body: bytes, obs_dim: int, max_batch: int) -> tuple[np.ndarray, bool]:
    """Parse a JSON request body into float32 observations (B, obs_dim) and whether it held one observation."""
    if not body:
        raise RequestError(400, 'empty request body; send JSON {"obs": [...]} with obs_dim=' f"{obs_dim} numbers")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise RequestError(400, f"request body is not valid JSON ({error}); send {{\"obs\": [...]}} — NaN and "
                                "Infinity are not JSON and not accepted") from None
    if not isinstance(payload, dict) or "obs" not in payload:
        got = f"an object with keys {sorted(payload)[:5]}" if isinstance(payload, dict) else type(payload).__name__
        raise RequestError(422, f'request JSON must be an object with key "obs", got {got}')
    return check_obs(payload["obs"], obs_dim, max_batch)


def check_obs(obs: object, obs_dim: int, max_batch: int) -> tuple[np.ndarray, bool]:
    """Check nested lists of numbers against the spec; return float32 (B, obs_dim) and whether it was one obs."""
    if not isinstance(obs, list):
        raise RequestError(422, f'"obs" must be a list of {obs_dim} numbers or a list of such lists, '
                                f"got {type(obs).__name__}")
    if not obs:
        raise RequestError(422, f'"obs" is empty; send {obs_dim} numbers or a non-empty list of such lists')
    try:
        array = np.asarray(obs)
    except ValueError:
        raise RequestError(422, f'"obs" rows have different lengths; every observation needs obs_dim={obs_dim} '
                                "numbers") from None
    if array.dtype.kind not in "fiu":
        raise RequestError(422, f'"obs" must hold only numbers, found {_describe_non_numbers(array)}')
    return _check_array(array, obs_dim, max_batch, '"obs"')


def decode_binary_obs(body: bytes, shape_header: str | None, obs_dim: int, max_batch: int) -> tuple[np.ndarray, bool]:
    """Parse a raw float32 body (with optional shape header) into observations (B, obs_dim)."""
    if shape_header is None:
        row_bytes = 4 * obs_dim
        if not body or len(body) % row_bytes:
            raise RequestError(422, f"binary body has {len(body)} bytes, expected a non-zero multiple of "
                                    f"4*obs_dim={row_bytes} (little-endian float32 rows)")
        return _check_array(np.frombuffer(body, dtype=FLOAT32_LE).reshape(-1, obs_dim), obs_dim, max_batch,
                            "binary body")
    shape = _parse_shape(shape_header)
    if shape[-1] != obs_dim:
        raise RequestError(422, f"binary body has shape {list(shape)} ({SHAPE_HEADER}), expected [{obs_dim}] "
                                f"(one observation) or [batch, {obs_dim}] (obs_dim={obs_dim})")
    expected_bytes = 4 * math.prod(shape)
    if expected_bytes != len(body):
        hint = " (float64 data? send little-endian float32)" if len(body) == 2 * expected_bytes else ""
        raise RequestError(422, f"{SHAPE_HEADER}: {shape_header} needs {expected_bytes} bytes of float32, "
                                f"the body has {len(body)}{hint}")
    return _check_array(np.frombuffer(body, dtype=FLOAT32_LE).reshape(shape), obs_dim, max_batch, "binary body")


def decode_stream_frame(frame: bytes, obs_dim: int, max_batch: int) -> np.ndarray:
    """A WebSocket binary frame (k*obs_dim float32 values) as observations (k, obs_dim)."""
    obs, _ = decode_binary_obs(frame, None, obs_dim, max_batch)
    return obs


def encode_json_action(actions: np.ndarray, single: bool) -> bytes:
    """`{"action": ...}` with the request's rank."""
    return orjson.dumps({"action": actions[0] if single else actions}, option=orjson.OPT_SERIALIZE_NUMPY)


def encode_binary_action(actions: np.ndarray, single: bool) -> tuple[bytes, str]:
    """Raw little-endian float32 actions and the shape header that goes with them."""
    if single:
        actions = actions[0]
    return actions.astype(FLOAT32_LE, copy=False).tobytes(), ",".join(str(size) for size in actions.shape)


def encode_binary_obs(obs: np.ndarray) -> tuple[bytes, str]:
    """Client side: observations (obs_dim,) or (B, obs_dim) as raw float32 bytes plus shape header."""
    array = np.ascontiguousarray(obs, dtype=FLOAT32_LE)
    return array.tobytes(), ",".join(str(size) for size in array.shape)


def decode_binary_action(body: bytes, shape_header: str | None) -> np.ndarray:
    """Client side: raw float32 actions reshaped by the reply's shape header."""
    actions = np.frombuffer(body, dtype=FLOAT32_LE)
    if shape_header:
        actions = actions.reshape(_parse_shape(shape_header))
    return actions.astype(np.float32)


def _check_array(array: np.ndarray, obs_dim: int, max_batch: int, source: str) -> tuple[np.ndarray, bool]:
    single = array.ndim == 1
    if single:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != obs_dim:
        shape = array.shape[1:] if single else array.shape
        raise RequestError(422, f"{source} has shape {list(shape)}, expected [{obs_dim}] (one observation) or "
                                f"[batch, {obs_dim}] (obs_dim={obs_dim})")
    if array.shape[0] > max_batch:
        raise RequestError(413, f"{source} holds a batch of {array.shape[0]} observations, more than the server's "
                                f"max_batch={max_batch}; split it into smaller requests")
    with np.errstate(over="ignore"):  # values beyond float32 range become inf and are refused just below
        obs = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(obs).all():
        row, column = np.argwhere(~np.isfinite(obs))[0]
        where = f"index {column}" if single else f"row {row}, index {column}"
        raise RequestError(422, f"{source} holds a non-finite value ({float(array[row, column])!r}) at {where}; NaN, "
                                "infinity and values beyond float32 range are refused")
    return obs, single


def _parse_shape(header: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(part) for part in header.split(","))
    except ValueError:
        raise RequestError(400, f"{SHAPE_HEADER}: {header!r} is not a comma-separated list of sizes, "
                                "e.g. '64' or '16,64'") from None
    if not shape or len(shape) > 2 or min(shape) <= 0:
        raise RequestError(400, f"{SHAPE_HEADER}: {header!r} must be 'obs_dim' or 'batch,obs_dim' with positive sizes")
    return shape


def _describe_non_numbers(array: np.ndarray) -> str:
    if array.dtype.kind == "b":
        return "booleans"
    if array.dtype.kind in "US":
        return f"strings (e.g. {array.flat[0]!r})"
    kinds = sorted({type(value).__name__ for value in np.ravel(array) if not isinstance(value, (int, float))})
    return ", ".join(kinds) or "integers too large for float32"
