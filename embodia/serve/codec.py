"""Wire formats of the policy server: JSON and raw bodies, checked against the policy's inputs.

JSON: `{"obs": [..obs_dim..]}` or `{"obs": [[..], ..]}` → `{"action": ...}` of the same rank. A camera
policy also takes `"images": {key: IMAGE}` per image key, where IMAGE is the base64 of the raw uint8 bytes
(size, size, 3) — (B, size, size, 3) for a batch — row-major RGB, or the same as nested lists of 0..255.
Binary (`application/octet-stream`): the observations as little-endian float32, row-major, then for a
camera policy each image key's uint8 block (B, size, size, 3) in the order of `image_keys`; the header
`x-embodia-shape: obs_dim` (one observation) or `batch,obs_dim` gives the batch, else it follows from the
length. A `/stream` binary frame is the same body without the header; a text frame is the JSON body.
"""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

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


@dataclass(frozen=True)
class InputSpec:
    """What a request must carry: observations (B, obs_dim) float32 [and per image key (B, size, size, 3) uint8]."""

    obs_dim: int
    max_batch: int
    image_keys: tuple[str, ...] = ()
    image_size: int = 0

    @cached_property
    def image_bytes(self) -> int:
        """Bytes of one (size, size, 3) uint8 image."""
        return self.image_size * self.image_size * 3

    @cached_property
    def row_bytes(self) -> int:
        """Binary bytes of one observation and its images."""
        return 4 * self.obs_dim + len(self.image_keys) * self.image_bytes


class Inputs(NamedTuple):
    """A decoded request: observations (B, obs_dim) float32, images {key: (B, size, size, 3) uint8} or None,
    and whether it held one observation (the reply then drops the batch axis)."""

    obs: np.ndarray
    images: dict[str, np.ndarray] | None
    single: bool


def decode_json(body: bytes, spec: InputSpec) -> Inputs:
    """Parse a JSON request body against `spec` (raises RequestError with the status to answer)."""
    obs_dim, max_batch = spec.obs_dim, spec.max_batch
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
    obs, single = check_obs(payload["obs"], obs_dim, max_batch)
    return Inputs(obs, _json_images(payload.get("images"), spec, obs.shape[0], single), single)


def _json_images(images: object, spec: InputSpec, batch: int, single: bool) -> dict[str, np.ndarray] | None:
    if not spec.image_keys:
        if images is not None:
            raise RequestError(422, 'this policy takes no images; send only "obs"')
        return None
    if not isinstance(images, dict):
        raise RequestError(422, f'this camera policy needs "images": {{key: base64 of uint8 ({spec.image_size}, '
                                f"{spec.image_size}, 3) bytes, or nested lists}} for keys {list(spec.image_keys)}")
    unknown = sorted(set(images) - set(spec.image_keys))
    missing = [key for key in spec.image_keys if key not in images]
    if unknown or missing:
        raise RequestError(422, f'"images" has keys {sorted(images)[:5]}: unknown {unknown[:5]}, missing {missing}; '
                                f"this policy takes {list(spec.image_keys)}")
    return {key: _json_image(images[key], key, spec, batch, single) for key in spec.image_keys}


def _json_image(value: object, key: str, spec: InputSpec, batch: int, single: bool) -> np.ndarray:
    size = spec.image_size
    shape = (batch, size, size, 3)
    wanted = f"({size}, {size}, 3)" if single else f"({batch}, {size}, {size}, 3)"
    if isinstance(value, str):
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(422, f'image "{key}" is not valid base64; send base64 of its raw uint8 bytes') from None
        if len(raw) != batch * spec.image_bytes:
            raise RequestError(422, f'image "{key}" has {len(raw)} bytes, expected {batch * spec.image_bytes}: uint8 '
                                    f"{wanted}, row-major RGB")
        return np.frombuffer(raw, dtype=np.uint8).reshape(shape)
    if not isinstance(value, list):
        raise RequestError(422, f'image "{key}" must be a base64 string or nested lists of uint8 {wanted}, got '
                                f"{type(value).__name__}")
    try:
        array = np.asarray(value)
    except ValueError:
        raise RequestError(422, f'image "{key}" has rows of different lengths; expected uint8 {wanted}') from None
    if array.shape != shape[1 if single else 0:]:
        raise RequestError(422, f'image "{key}" has shape {list(array.shape)}, expected {wanted}')
    if array.dtype.kind not in "iu" or array.min() < 0 or array.max() > 255:
        raise RequestError(422, f'image "{key}" must hold integers 0..255 (uint8 RGB)')
    return array.astype(np.uint8).reshape(shape)


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


def decode_binary(body: bytes, shape_header: str | None, spec: InputSpec) -> Inputs:
    """Parse a raw body (float32 observations, then each image key's uint8 block) with its optional shape header."""
    obs_dim, row_bytes = spec.obs_dim, spec.row_bytes
    if shape_header is None:
        if not body or len(body) % row_bytes:
            raise RequestError(422, f"binary body has {len(body)} bytes, expected a non-zero multiple of "
                                    f"{_row_layout(spec)}")
        shape: tuple[int, ...] = (len(body) // row_bytes, obs_dim)
    else:
        shape = _parse_shape(shape_header)
        if shape[-1] != obs_dim:
            raise RequestError(422, f"binary body has shape {list(shape)} ({SHAPE_HEADER}), expected [{obs_dim}] "
                                    f"(one observation) or [batch, {obs_dim}] (obs_dim={obs_dim})")
        expected_bytes = math.prod(shape[:-1]) * row_bytes
        if expected_bytes != len(body):
            hint = " (float64 data? send little-endian float32)" if len(body) == 2 * expected_bytes else ""
            raise RequestError(422, f"{SHAPE_HEADER}: {shape_header} needs {expected_bytes} bytes "
                                    f"({_row_layout(spec)}), the body has {len(body)}{hint}")
    batch = math.prod(shape[:-1])
    obs = np.frombuffer(body, dtype=FLOAT32_LE, count=batch * obs_dim).reshape(shape)
    obs, single = _check_array(obs, obs_dim, spec.max_batch, "binary body")
    return Inputs(obs, _binary_images(body, spec, batch), single)


def _row_layout(spec: InputSpec) -> str:
    return f"{spec.row_bytes} bytes per row: little-endian float32 obs_dim={spec.obs_dim}" + (
        f", then {len(spec.image_keys)} uint8 image block(s) of {spec.image_bytes} bytes" if spec.image_keys else "")


def _binary_images(body: bytes, spec: InputSpec, batch: int) -> dict[str, np.ndarray] | None:
    if not spec.image_keys:
        return None
    size, block = spec.image_size, batch * spec.image_bytes
    start = 4 * batch * spec.obs_dim
    return {key: np.frombuffer(body, dtype=np.uint8, count=block, offset=start + index * block)
            .reshape(batch, size, size, 3) for index, key in enumerate(spec.image_keys)}


def encode_json_action(actions: np.ndarray, single: bool) -> bytes:
    """`{"action": ...}` with the request's rank."""
    return orjson.dumps({"action": actions[0] if single else actions}, option=orjson.OPT_SERIALIZE_NUMPY)


def encode_binary_action(actions: np.ndarray, single: bool) -> tuple[bytes, str]:
    """Raw little-endian float32 actions and the shape header that goes with them."""
    if single:
        actions = actions[0]
    return actions.astype(FLOAT32_LE, copy=False).tobytes(), ",".join(str(size) for size in actions.shape)


def encode_binary_obs(obs: np.ndarray, images: list[np.ndarray] | None = None) -> tuple[bytes, str]:
    """Client side: observations (obs_dim,) or (B, obs_dim) as raw float32 bytes, followed by each image
    block as uint8 (in the policy's `image_keys` order), plus the shape header."""
    array = np.ascontiguousarray(obs, dtype=FLOAT32_LE)
    blocks = [array.tobytes()] + [np.ascontiguousarray(image, dtype=np.uint8).tobytes() for image in images or ()]
    return b"".join(blocks), ",".join(str(size) for size in array.shape)


def encode_json_obs(obs: np.ndarray, images: dict[str, np.ndarray] | None = None) -> bytes:
    """Client side: `{"obs": ..., "images": {key: base64 of the uint8 bytes}}`."""
    payload: dict[str, object] = {"obs": np.asarray(obs, dtype=np.float32)}
    if images:
        payload["images"] = {key: base64.b64encode(np.ascontiguousarray(image, dtype=np.uint8).tobytes()).decode()
                             for key, image in images.items()}
    return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)


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
