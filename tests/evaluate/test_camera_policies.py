"""Camera (vision BC) checkpoints in evaluation suites: they render from each scenario's env, so a scenario's
lighting and camera changes change what they see and do; state policies are untouched."""

from __future__ import annotations

import numpy as np
import pytest

from embodia.evaluate import run_suite
from embodia.evaluate.conditions import ScenarioConditions
from embodia.evaluate.policies import CameraPolicy, is_camera_checkpoint, resolve_policy
from embodia.evaluate.runner import make_env
from embodia.evaluate.suite import load_suite

TASK = "arm-reach"
SIZE = 32
KEYS = ["observation.images.front"]
TINY_VISION = {"num_steps": 20, "hidden_sizes": [32], "batch_size": 32, "image_keys": KEYS, "image_size": SIZE,
               "image_channels": 8, "image_feature_dim": 16, "random_shift_px": 0}
DARK = {"lights": [{"diffuse": [0.02, 0.02, 0.02], "ambient": [0.0, 0.0, 0.0]}]}
MOVED = {"cameras": [{"name": "front", "pos_offset": [0.6, 0.4, 0.5], "fovy": 80}]}


@pytest.fixture(scope="module")
def vision_checkpoint(tmp_path_factory):
    """A tiny vision BC trained for a few steps on a 2-episode camera dataset of the arm-reach expert."""
    from embodia.data.generate import GenerateConfig, generate
    from embodia.learn.bc import train_bc
    from embodia.learn.vision import load_vision_demonstrations

    root = tmp_path_factory.mktemp("camera-eval")
    generate(GenerateConfig(task=TASK, episodes=2, cameras=["front"], image_size=SIZE, visual_randomization=None,
                            envs_per_worker=2, stop_on_success=False), root / "data")
    demos = load_vision_demonstrations(root / "data", KEYS, SIZE)
    return train_bc(demos, TINY_VISION, root / "vision")


def suite_of(scenarios: list[dict], episodes: int = 2, steps: int = 6, **extra) -> dict:
    return {"name": "camera", "task": TASK, "episodes": episodes, "seed": 3, "max_episode_steps": steps,
            "scenarios": scenarios, **extra}


def recorded_actions(monkeypatch) -> list[np.ndarray]:
    """Record every action batch a CameraPolicy returns, in call order."""
    log: list[np.ndarray] = []
    original = CameraPolicy.act

    def act(self, obs):
        action = original(self, obs)
        log.append(action.copy())
        return action

    monkeypatch.setattr(CameraPolicy, "act", act)
    return log


def test_camera_checkpoint_resolves_to_a_camera_policy(vision_checkpoint):
    assert is_camera_checkpoint(vision_checkpoint)
    policy = resolve_policy(str(vision_checkpoint))
    assert isinstance(policy, CameraPolicy)
    assert policy.image_keys == KEYS and policy.obs_dim == 21 and policy.act_dim == 3
    with pytest.raises(RuntimeError, match="bind_env"):
        policy.act(np.zeros((1, 21)))


def test_suite_lighting_and_camera_changes_reach_the_camera_policy(vision_checkpoint, monkeypatch, tmp_path):
    log = recorded_actions(monkeypatch)
    steps = 6
    suite = suite_of([{"name": "nominal"}, {"name": "nominal-again"}, {"name": "dark", "rendering": DARK},
                      {"name": "camera-moved", "rendering": MOVED}], steps=steps,
                     video={"camera": "front", "width": 32, "height": 32, "max_frames": 4})
    results = run_suite(suite, str(vision_checkpoint), tmp_path / "run", videos=True, report=False)
    assert [r.name for r in results.scenarios] == ["nominal", "nominal-again", "dark", "camera-moved"]
    for result in results.scenarios:
        assert result.episodes.seeds.tolist() == results.scenarios[0].episodes.seeds.tolist()
        assert result.episodes.length.tolist() == [steps, steps]  # arm-reach never terminates early
        assert all("reproduced" not in entry for entry in result.replay.values())  # videos from the run itself
    # each scenario: `steps` action batches in its run (videos are drawn from its recorded states, no replay)
    per_scenario = len(log) // 4
    assert per_scenario == steps
    runs = {name: np.stack(log[k * per_scenario:k * per_scenario + steps])
            for k, name in enumerate(["nominal", "nominal-again", "dark", "camera-moved"])}
    assert all(batch.shape == (steps, 2, 3) for batch in runs.values())
    np.testing.assert_array_equal(runs["nominal"], runs["nominal-again"])  # deterministic given the images
    # the first action sees the same initial state in every scenario: only the rendered image differs
    for changed in ("dark", "camera-moved"):
        assert np.abs(runs[changed][0] - runs["nominal"][0]).max() > 1e-4, changed
    nominal = results.scenario("nominal").episodes.episode_return
    assert not np.allclose(results.scenario("dark").episodes.episode_return, nominal, rtol=0, atol=1e-9)


def test_rendering_changes_reach_randomized_envs_whose_models_are_copies():
    suite = load_suite(suite_of([{"name": "nominal", "randomization": {"body_mass_scale": [0.9, 1.1]}},
                                 {"name": "moved", "randomization": {"body_mass_scale": [0.9, 1.1]}, "rendering": MOVED}]))
    frames = {}
    for scenario in suite.scenarios:
        env = make_env(suite, scenario, 2)
        try:
            assert env.sim.models[0] is not env.sim.model  # per-env copies made before the scenario applies
            ScenarioConditions(scenario, env)
            env.reset(options={"episode_seeds": np.array([1, 2])})
            frames[scenario.name] = env.render(None, camera="front", width=SIZE, height=SIZE)
            camera_pos = [model.camera("front").pos.copy() for model in env.sim.models]
        finally:
            env.close()
        expected = np.array([1.15, -0.75, 0.75]) + (np.array([0.6, 0.4, 0.5]) if scenario.rendering.cameras else 0.0)
        np.testing.assert_allclose(camera_pos, [expected, expected])
    difference = np.abs(frames["moved"].astype(int) - frames["nominal"].astype(int)).mean()
    assert difference > 5.0


def write_camera_onnx(path, obs_dim: int, act_dim: int, key: str, size: int):
    """A core-contract camera ONNX policy: action = clip(brightness of image `key` - 0.5, -1, 1) on every axis,
    with `obs` an input too (multiplied by zero), so what it does depends only on what the camera sees."""
    import onnx
    from onnx import TensorProto, helper

    from embodia.core.policy import PolicyMetadata

    graph = helper.make_graph(
        [helper.make_node("Cast", [key], ["pixels"], to=TensorProto.FLOAT),
         helper.make_node("ReduceMean", ["pixels"], ["brightness"], axes=[1, 2, 3], keepdims=0),  # (B,)
         helper.make_node("Unsqueeze", ["brightness", "axis1"], ["column"]),  # (B, 1)
         helper.make_node("MatMul", ["obs", "zeros"], ["obs_term"]),  # (B, act_dim)
         helper.make_node("Add", ["obs_term", "column"], ["sum"]),
         helper.make_node("Mul", ["sum", "scale"], ["scaled"]),
         helper.make_node("Sub", ["scaled", "half"], ["centred"]),
         helper.make_node("Clip", ["centred", "low", "high"], ["action"])],
        "camera_policy",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", obs_dim]),
         helper.make_tensor_value_info(key, TensorProto.UINT8, ["batch", size, size, 3])],
        [helper.make_tensor_value_info("action", TensorProto.FLOAT, ["batch", act_dim])],
        initializer=[helper.make_tensor("axis1", TensorProto.INT64, [1], [1]),
                     helper.make_tensor("zeros", TensorProto.FLOAT, [obs_dim, act_dim], [0.0] * (obs_dim * act_dim)),
                     helper.make_tensor("scale", TensorProto.FLOAT, [], [1.0 / 255.0]),
                     helper.make_tensor("half", TensorProto.FLOAT, [], [0.5]),
                     helper.make_tensor("low", TensorProto.FLOAT, [], [-1.0]),
                     helper.make_tensor("high", TensorProto.FLOAT, [], [1.0])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    metadata = PolicyMetadata(obs_dim=obs_dim, act_dim=act_dim, action_low=(-1.0,) * act_dim,
                              action_high=(1.0,) * act_dim, task=TASK, algo="test", image_keys=(key,), image_size=size)
    helper.set_model_props(model, metadata.to_onnx())
    onnx.save(model, path)
    return path


def test_camera_onnx_policy_renders_its_image_input_from_each_scenario(tmp_path):
    """issue 8: a core-contract camera ONNX file (one uint8 input per image key) is evaluated with rendered images."""
    from embodia.core.policy import OnnxPolicy

    onnx_path = write_camera_onnx(tmp_path / "camera.onnx", 21, 3, KEYS[0], SIZE)
    policy = resolve_policy(str(onnx_path))
    assert isinstance(policy, CameraPolicy) and isinstance(policy.policy, OnnxPolicy)
    suite = suite_of([{"name": "nominal"}, {"name": "again"}, {"name": "dark", "rendering": DARK}], steps=5)
    results = run_suite(suite, str(onnx_path), videos=False)
    returns = {r.name: r.episodes.episode_return for r in results.scenarios}
    np.testing.assert_array_equal(returns["nominal"], returns["again"])
    assert not np.allclose(returns["dark"], returns["nominal"], rtol=0, atol=1e-9)


def test_a_served_camera_policy_is_sent_rendered_images_and_matches_the_file(tmp_path):
    from embodia.serve.server import serve_in_background

    onnx_path = write_camera_onnx(tmp_path / "camera.onnx", 21, 3, KEYS[0], SIZE)
    suite = suite_of([{"name": "nominal"}, {"name": "dark", "rendering": DARK}], steps=4)
    url, stop = serve_in_background(onnx_path, port=0)
    try:
        policy = resolve_policy(url)
        assert isinstance(policy, CameraPolicy) and policy.image_keys == KEYS
        remote = run_suite(suite, url, videos=False)
    finally:
        stop()
    local = run_suite(suite, str(onnx_path), videos=False)
    for served, from_file in zip(remote.scenarios, local.scenarios):
        np.testing.assert_allclose(served.episodes.episode_return, from_file.episodes.episode_return, atol=1e-9)
