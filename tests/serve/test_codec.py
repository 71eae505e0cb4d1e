"""Wire formats: JSON and binary observations are checked against the spec before reaching the model."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from embodia.serve.codec import (
    InputSpec,
    RequestError,
    decode_binary,
    decode_binary_action,
    decode_json,
    encode_binary_action,
    encode_binary_obs,
    encode_json_action,
    encode_json_obs,
)

STATE_3 = InputSpec(obs_dim=3, max_batch=4)
STATE_3_BATCH_8 = InputSpec(obs_dim=3, max_batch=8)
CAMERA = InputSpec(obs_dim=2, max_batch=4, image_keys=("observation.images.front", "observation.images.wrist"),
                   image_size=4)


def _json(obs: object) -> bytes:
    return orjson.dumps({"obs": obs})


def test_single_and_batch_json_keep_their_rank() -> None:
    obs, images, single = decode_json(_json([1, 2.5, -3]), STATE_3)
    assert single and obs.shape == (1, 3) and obs.dtype == np.float32 and images is None
    obs, _, single = decode_json(_json([[1, 2, 3], [4, 5, 6]]), STATE_3)
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
    (b'{"obs": [1, 2, 3], "images": {"cam": "AAAA"}}', 422, "this policy takes no images"),
])
def test_bad_json_is_refused_with_a_status_and_message(body: bytes, status: int, needle: str) -> None:
    with pytest.raises(RequestError) as caught:
        decode_json(body, STATE_3)
    assert caught.value.status == status
    assert needle in caught.value.message


def test_binary_round_trip_is_exact() -> None:
    obs = np.random.default_rng(1).normal(size=(4, 3)).astype(np.float32)
    body, shape = encode_binary_obs(obs)
    decoded, _, single = decode_binary(body, shape, STATE_3_BATCH_8)
    assert shape == "4,3" and not single
    np.testing.assert_array_equal(decoded, obs)
    decoded, _, single = decode_binary(obs[0].tobytes(), "3", STATE_3_BATCH_8)
    assert single and decoded.shape == (1, 3)


@pytest.mark.parametrize(("body", "shape", "needle"), [
    (b"\x00" * 8, None, "multiple of 12 bytes per row: little-endian float32 obs_dim=3"),
    (np.zeros(6, np.float32).tobytes(), "3", "needs 12 bytes (12 bytes per row: little-endian float32 obs_dim=3),"
                                            " the body has 24"),
    (np.zeros(6, np.float32).tobytes(), "3,2", "shape [3, 2]"),
    (np.zeros(3, np.float32).tobytes(), "three", "not a comma-separated list"),
    (np.zeros(3, np.float64).tobytes(), "3", "float64 data? send little-endian float32"),
    (np.array([1, np.nan, 2], np.float32).tobytes(), "3", "non-finite value (nan) at index 1"),
])
def test_bad_binary_is_refused(body: bytes, shape: str | None, needle: str) -> None:
    with pytest.raises(RequestError) as caught:
        decode_binary(body, shape, STATE_3_BATCH_8)
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


def _camera_batch(batch: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(batch)
    obs = rng.normal(size=(batch, 2)).astype(np.float32)
    return obs, {key: rng.integers(0, 256, (batch, 4, 4, 3), dtype=np.uint8) for key in CAMERA.image_keys}


@pytest.mark.parametrize("batch", [1, 3])
def test_camera_inputs_round_trip_in_json_base64_and_binary(batch: int) -> None:
    obs, images = _camera_batch(batch)
    body, shape = encode_binary_obs(obs, [images[key] for key in CAMERA.image_keys])
    for decoded in (decode_json(encode_json_obs(obs, images), CAMERA), decode_binary(body, shape, CAMERA),
                    decode_binary(body, None, CAMERA)):
        np.testing.assert_array_equal(decoded.obs, obs)
        assert list(decoded.images) == list(CAMERA.image_keys)
        for key in CAMERA.image_keys:
            assert decoded.images[key].dtype == np.uint8
            np.testing.assert_array_equal(decoded.images[key], images[key])


def test_camera_images_as_nested_lists_keep_the_request_rank() -> None:
    obs, images = _camera_batch(1)
    single = orjson.dumps({"obs": obs[0].tolist(), "images": {key: images[key][0].tolist() for key in images}})
    decoded = decode_json(single, CAMERA)
    assert decoded.single and decoded.images["observation.images.wrist"].shape == (1, 4, 4, 3)
    np.testing.assert_array_equal(decoded.images["observation.images.wrist"], images["observation.images.wrist"])


@pytest.mark.parametrize(("images", "needle"), [
    (None, 'needs "images"'),
    ({"observation.images.front": "AAAA"}, "missing ['observation.images.wrist']"),
    ({"observation.images.front": 3, "observation.images.wrist": "AAAA"}, "base64 string or nested lists"),
    ({"observation.images.front": "not base64!", "observation.images.wrist": "AAAA"}, "not valid base64"),
    ({"observation.images.front": "AAAA", "observation.images.wrist": "AAAA"}, "has 3 bytes, expected 48"),
    ({"observation.images.front": [[[0, 0, 0]] * 4] * 3, "observation.images.wrist": "AAAA"},
     "shape [3, 4, 3], expected (4, 4, 3)"),
    ({"observation.images.front": [[[0, 0, 300]] * 4] * 4, "observation.images.wrist": "AAAA"}, "integers 0..255"),
    ({"observation.images.front": "AAAA", "observation.images.wrist": "AAAA", "cam": "AAAA"}, "unknown ['cam']"),
])
def test_bad_camera_images_are_refused_naming_the_key(images: object, needle: str) -> None:
    payload: dict = {"obs": [0.0, 1.0]}
    if images is not None:
        payload["images"] = images
    with pytest.raises(RequestError) as caught:
        decode_json(orjson.dumps(payload), CAMERA)
    assert caught.value.status == 422 and needle in caught.value.message


def test_binary_camera_body_of_the_wrong_length_names_the_layout() -> None:
    obs, images = _camera_batch(2)
    body, shape = encode_binary_obs(obs, [images["observation.images.front"]])  # one camera block missing
    with pytest.raises(RequestError, match=r"needs 208 bytes \(104 bytes per row: .* then 2 uint8 image block\(s\) of 48 bytes\)"):
        decode_binary(body, shape, CAMERA)
    with pytest.raises(RequestError, match="non-zero multiple of 104 bytes per row"):
        decode_binary(body, None, CAMERA)
