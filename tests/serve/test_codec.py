"""Wire formats: JSON and binary observations are checked against the spec before reaching the model."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from embodia.serve.codec import (
    RequestError,
    decode_binary_action,
    decode_binary_obs,
    decode_json_obs,
    encode_binary_action,
    encode_binary_obs,
    encode_json_action,
)


def _json(obs: object) -> bytes:
    return orjson.dumps({"obs": obs})


def test_single_and_batch_json_keep_their_rank() -> None:
    obs, single = decode_json_obs(_json([1, 2.5, -3]), obs_dim=3, max_batch=4)
    assert single and obs.shape == (1, 3) and obs.dtype == np.float32
    obs, single = decode_json_obs(_json([[1, 2, 3], [4, 5, 6]]), obs_dim=3, max_batch=4)
    assert not single and obs.tolist() == [[1, 2, 3], [4, 5, 6]]


@pytest.mark.parametrize(("body", "status", "needle"), [
    (b"", 400, "empty request body"),
    (b'{"obs": [1, 2', 400, "not valid JSON"),
    (b'{"obs": [NaN, 1, 2]}', 400, "NaN and Infinity are not JSON"),
    (b'{"observation": [1, 2, 3]}', 422, 'key "obs"'),
    (b'{"obs": 3}', 422, "got int"),
    (b'{"obs": []}', 422, '"obs" is empty'),
    (b'{"obs": [1, 2]}', 422, "shape [2], expected [3]"),
    (b'{"obs": [[1, 2, 3], [4, 5]]}', 422, "different lengths"),
    (b'{"obs": [[[1, 2, 3]]]}', 422, "shape [1, 1, 3]"),
    (b'{"obs": ["1", "2", "3"]}', 422, "only numbers, found strings"),
    (b'{"obs": [1, null, 3]}', 422, "found NoneType"),
    (b'{"obs": [true, false, true]}', 422, "found booleans"),
    (b'{"obs": [1, 2, 1e300]}', 422, "non-finite value (1e+300) at index 2"),
    (b'{"obs": [[1, 2, 3], [1, 2, 3], [1, 2, 3], [1, 2, 3], [1, 2, 3]]}', 413, "max_batch=4"),
])
def test_bad_json_is_refused_with_a_status_and_message(body: bytes, status: int, needle: str) -> None:
    with pytest.raises(RequestError) as caught:
        decode_json_obs(body, obs_dim=3, max_batch=4)
    assert caught.value.status == status
    assert needle in caught.value.message


def test_binary_round_trip_is_exact() -> None:
    obs = np.random.default_rng(1).normal(size=(4, 3)).astype(np.float32)
    body, shape = encode_binary_obs(obs)
    decoded, single = decode_binary_obs(body, shape, obs_dim=3, max_batch=8)
    assert shape == "4,3" and not single
    np.testing.assert_array_equal(decoded, obs)
    decoded, single = decode_binary_obs(obs[0].tobytes(), "3", obs_dim=3, max_batch=8)
    assert single and decoded.shape == (1, 3)


@pytest.mark.parametrize(("body", "shape", "needle"), [
    (b"\x00" * 8, None, "multiple of 4*obs_dim=12"),
    (np.zeros(6, np.float32).tobytes(), "3", "needs 12 bytes of float32, the body has 24"),
    (np.zeros(6, np.float32).tobytes(), "3,2", "shape [3, 2]"),
    (np.zeros(3, np.float32).tobytes(), "three", "not a comma-separated list"),
    (np.zeros(3, np.float64).tobytes(), "3", "float64 data? send little-endian float32"),
    (np.array([1, np.nan, 2], np.float32).tobytes(), "3", "non-finite value (nan) at index 1"),
])
def test_bad_binary_is_refused(body: bytes, shape: str | None, needle: str) -> None:
    with pytest.raises(RequestError) as caught:
        decode_binary_obs(body, shape, obs_dim=3, max_batch=8)
    assert needle in caught.value.message
    assert 400 <= caught.value.status < 500


def test_action_encodings_keep_rank_and_values() -> None:
    actions = np.array([[0.1, -0.25], [0.5, 1.0]], dtype=np.float32)
    assert orjson.loads(encode_json_action(actions, single=True)) == {"action": [0.1, -0.25]}  # shortest float32 text
    decoded = np.asarray(orjson.loads(encode_json_action(actions, single=False))["action"], dtype=np.float32)
    np.testing.assert_array_equal(decoded, actions)
    body, shape = encode_binary_action(actions, single=True)
    assert shape == "2"
    np.testing.assert_array_equal(decode_binary_action(body, shape), actions[0])
