"""Vision BC: encoder shapes and augmentation, a dataset with cameras whose images carry the goal, checkpoint and
ONNX round trips, acting in a BatchEnv through rendered cameras, and errors that name the available keys."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from embodia.learn.bc import BCConfig, VisionBCPolicy, action_mse, export_bc, load_bc, train_bc
from embodia.core.errors import DatasetFormatError
from embodia.core.policy import OnnxPolicy
from embodia.learn.policy import load_trained_policy
from embodia.learn.vision import (
    CameraPolicyAdapter,
    ImageEncoder,
    VisionDemonstrations,
    load_vision_demonstrations,
    random_shift,
    resize_images,
)

TASK = "arm-reach"
KEYS = ["observation.images.front", "observation.images.wrist"]
SIZE = 32
NO_GOAL = list(range(15))  # joint pos (6) | joint vel (6) | grip point (3): the goal is only in the images
VISION = {"num_steps": 1000, "hidden_sizes": [128, 128], "batch_size": 64, "state_indices": NO_GOAL,
          "image_keys": KEYS, "image_size": SIZE, "image_channels": 16, "random_shift_px": 2}


@pytest.fixture(scope="module")
def camera_dataset(tmp_path_factory):
    from embodia.data.generate import GenerateConfig, generate

    root = tmp_path_factory.mktemp("vision") / "reach"
    generate(GenerateConfig(task=TASK, episodes=24, cameras=["front", "wrist"], image_size=SIZE,
                            visual_randomization=None, envs_per_worker=12, stop_on_success=False), root)
    return root


@pytest.fixture(scope="module")
def split_demos(camera_dataset):
    demos = load_vision_demonstrations(camera_dataset, KEYS, SIZE)
    held_out = demos.episode_index >= demos.episode_index.max() - 3

    def subset(mask):
        return VisionDemonstrations(demos.observations[mask], demos.actions[mask], demos.episode_index[mask],
                                    demos.task, demos.action_low, demos.action_high,
                                    images={key: frames[mask] for key, frames in demos.images.items()})

    return subset(~held_out), subset(held_out)


@pytest.fixture(scope="module")
def trained(split_demos, tmp_path_factory):
    train, _ = split_demos
    out = tmp_path_factory.mktemp("vision-bc")
    state_only = train_bc(train, {k: v for k, v in VISION.items() if not k.startswith(("image", "random"))},
                          out / "state")
    return {"state": state_only, "vision": train_bc(train, VISION, out / "vision")}


def test_encoder_gives_one_feature_vector_per_image():
    encoder = ImageEncoder(channels=8, feature_dim=24)
    for size in (32, 64):
        features = encoder(torch.rand(5, 3, size, size))
        assert features.shape == (5, 24) and torch.isfinite(features).all()


def test_random_shift_crops_a_shifted_window_of_the_padded_image():
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    assert torch.equal(random_shift(images, 0), images)
    shifted = random_shift(images, 2, torch.Generator().manual_seed(0))
    assert shifted.shape == images.shape
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2), mode="replicate")
    for b in range(2):  # each image equals some 8x8 window of its padded copy
        windows = [(dy, dx) for dy in range(5) for dx in range(5)
                   if torch.equal(padded[b, :, dy:dy + 8, dx:dx + 8], shifted[b])]
        assert windows
    assert not torch.equal(shifted, images)  # seed 0 draws a non-zero shift


def test_resize_images_keeps_uint8_and_averages():
    frames = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    frames[:, :2, :2] = 200
    small = resize_images(frames, 2)
    assert small.dtype == np.uint8 and small.shape == (2, 2, 2, 3)
    assert small[0, 0, 0, 0] == 200 and small[0, 1, 1, 0] == 0


def test_dataset_images_are_row_aligned_with_state(camera_dataset, split_demos):
    from embodia.data.reader import Dataset

    train, _ = split_demos
    assert train.images[KEYS[0]].shape[1:] == (SIZE, SIZE, 3) and train.images[KEYS[0]].dtype == np.uint8
    dataset = Dataset(camera_dataset)
    first = dataset.episode(0)
    np.testing.assert_array_equal(train.images[KEYS[1]][: len(first["action"])], first[KEYS[1]])
    np.testing.assert_allclose(train.observations[: len(first["action"])], first["observation.state"])
    dataset.close()


def test_images_carry_the_goal_the_state_lacks(trained, split_demos):
    train, held_out = split_demos
    state_only, vision = load_bc(trained["state"]), load_bc(trained["vision"])
    assert isinstance(vision, VisionBCPolicy) and not isinstance(state_only, VisionBCPolicy)
    assert action_mse(vision, train) < 0.5 * action_mse(state_only, train)
    assert action_mse(vision, held_out) < 0.8 * action_mse(state_only, held_out)


def test_checkpoint_round_trip_gives_identical_actions(trained, split_demos, tmp_path):
    from embodia.learn.bc import save_bc

    _, held_out = split_demos
    policy = load_bc(trained["vision"])
    config = json.loads((trained["vision"] / "config.json").read_text())["policy"]["bc"]
    assert config["image_keys"] == KEYS and config["image_size"] == SIZE
    obs, images = held_out.observations[:40], {k: v[:40] for k, v in held_out.images.items()}
    copy = load_bc(save_bc(policy, tmp_path / "copy"))
    np.testing.assert_array_equal(policy.predict_chunk(obs, images), copy.predict_chunk(obs, images))
    np.testing.assert_array_equal(policy.act(obs, images), load_trained_policy(trained["vision"]).act(obs, images))


def test_onnx_export_takes_obs_and_image(trained, split_demos, tmp_path):
    import onnxruntime as ort

    _, held_out = split_demos
    policy = load_bc(trained["vision"])
    obs, images = held_out.observations[:7], {k: v[:7] for k, v in held_out.images.items()}
    path = export_bc(trained["vision"], tmp_path / "vision.onnx")
    session = ort.InferenceSession(str(path))
    assert [i.name for i in session.get_inputs()] == ["obs", *KEYS]  # one uint8 input per image key, named as it
    action = session.run(["action"], {"obs": obs, **images})[0]
    np.testing.assert_allclose(action, policy.predict_chunk(obs, images)[:, 0], atol=1e-5)
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["embodia.image_keys"]) == KEYS and meta["embodia.obs_dim"] == "21"
    core_policy = OnnxPolicy(path)  # the one ONNX policy class runs camera policies
    assert core_policy.image_keys == tuple(KEYS) and core_policy.metadata.image_size == SIZE
    np.testing.assert_allclose(core_policy.act(obs, images), action, atol=1e-6)


def test_adapter_renders_every_env_and_acts(trained):
    from embodia.tasks import BatchEnv

    policy = load_bc(trained["vision"])
    env = BatchEnv(TASK, 3, seed=5, autoreset_mode="disabled")
    try:
        obs, _ = env.reset(seed=5)
        adapter = CameraPolicyAdapter(policy, env)
        images = {key: env.render(None, camera=key.rsplit(".", 1)[1], width=SIZE, height=SIZE) for key in KEYS}
        expected = policy.predict_chunk(obs, images)[:, 0]
        action = adapter.act(obs)
        np.testing.assert_allclose(action, expected, atol=1e-6)
        for _ in range(3):
            obs, *_ = env.step(adapter.act(obs))
        assert adapter.frames_rendered == 4 * 3 * len(KEYS) and adapter.frames_per_s > 0
    finally:
        env.close()


def test_bad_image_key_names_the_available_keys(camera_dataset, split_demos, tmp_path):
    with pytest.raises(DatasetFormatError, match=r"observation.images.top.*observation.images.front"):
        load_vision_demonstrations(camera_dataset, ["observation.images.top"], SIZE)
    train, _ = split_demos
    with pytest.raises(DatasetFormatError, match="available image keys"):
        train_bc(train, VISION | {"image_keys": ["observation.images.side"]}, tmp_path / "bad")
    with pytest.raises(ValueError, match="observation.images.<camera>"):
        BCConfig(image_keys=["front"])
    with pytest.raises(ValueError, match="out of range"):
        train_bc(train, VISION | {"state_indices": [0, 99], "num_steps": 1}, tmp_path / "bad2")


def test_camera_policy_refuses_to_act_without_images_and_load_policy_returns_it(trained, split_demos):
    from embodia.learn import load_policy

    policy = load_bc(trained["vision"])
    with pytest.raises(ValueError, match="CameraPolicyAdapter"):
        policy.act(np.zeros((1, 21), dtype=np.float32))
    deployed = load_policy(trained["vision"])  # state and camera checkpoints load alike
    assert deployed.image_keys == tuple(KEYS) and deployed.image_size == SIZE
    with pytest.raises(ValueError, match="camera images"):
        deployed.act(np.zeros((1, 21), dtype=np.float32))
    _, held_out = split_demos
    obs, images = held_out.observations[:5], {k: v[:5] for k, v in held_out.images.items()}
    np.testing.assert_allclose(deployed.act(obs, images), policy.predict_chunk(obs, images)[:, 0], atol=1e-6)
