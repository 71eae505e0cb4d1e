"""Offscreen rendering: shapes, dtypes, named cameras, depth, and MP4 output."""

import numpy as np
import pytest

from embodia.sim.video import read_video, write_video
from embodia.tasks import BatchEnv


def test_rgb_and_depth_have_the_right_shapes_for_a_subset_of_envs():
    env = BatchEnv("cheetah-run", num_envs=4)
    env.reset(seed=0)
    rgb = env.render([1, 3], camera="track", width=96, height=64)
    depth = env.render([2], camera="track", width=96, height=64, depth=True)
    assert rgb.shape == (2, 64, 96, 3) and rgb.dtype == np.uint8
    assert rgb.std() > 5  # an actual image, not a blank buffer
    assert depth.shape == (1, 64, 96) and depth.dtype == np.float32 and np.isfinite(depth).all() and depth.max() > 0


def test_different_states_render_differently():
    env = BatchEnv("cartpole-swingup", num_envs=2)
    env.reset(seed=0)
    env.sim.qpos[1, 0] = 1.0  # move the cart of env 1
    images = env.render([0, 1], camera="fixed")
    assert np.abs(images[0].astype(int) - images[1].astype(int)).mean() > 1


def test_unknown_camera_names_the_choices():
    env = BatchEnv("cheetah-run", num_envs=1)
    with pytest.raises(ValueError, match="unknown camera 'nope'.*track"):
        env.render([0], camera="nope")


def test_multisample_off_renders_the_same_scene_and_out_of_range_is_refused():
    from embodia.core.errors import UserError
    from embodia.sim.render import BatchRenderer

    env = BatchEnv("arm-pick-place", num_envs=1)
    env.reset(seed=0)
    smooth = BatchRenderer(env.sim, width=64, height=64).render(np.array([0]), camera="front")
    samples = env.model.vis.quality.offsamples
    plain_renderer = BatchRenderer(env.sim, width=64, height=64, multisample=0)
    plain = plain_renderer.render(np.array([0]), camera="front")
    assert env.model.vis.quality.offsamples == samples  # the setting lives in the renderer, not in the model
    difference = np.abs(smooth.astype(int) - plain.astype(int))
    assert difference.mean() < 8 and difference.max() > 0  # same picture, only the edges differ
    with pytest.raises(UserError, match="multisample=17"):
        BatchRenderer(env.sim, width=64, height=64, multisample=17)


def test_mp4_round_trip(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (12, 64, 64, 3), dtype=np.uint8)
    frames[:] = frames[:1]  # static image compresses well and decodes close to the source
    path = write_video(tmp_path / "clip.mp4", frames, fps=20)
    decoded = read_video(path)
    assert decoded.shape == frames.shape


def test_label_burns_a_caption_into_the_corner_only():
    from embodia.sim.video import label_frames

    frames = np.full((2, 48, 96, 3), 128, dtype=np.uint8)
    labelled = label_frames(frames, "expert")
    assert labelled.shape == frames.shape
    assert (labelled[:, :16, :48] != 128).any() and (labelled[:, 30:, 60:] == 128).all()


RENDER_SCRIPT = """
import numpy as np, embodia
from embodia.tasks import BatchEnv
env = BatchEnv('cartpole-swingup', 1)
env.reset(seed=0)
image = env.render([0], camera='fixed', width=48, height=32)
env.close()
print(int(image.sum()))
"""


def test_gl_backend_is_overridable_and_both_render_the_same_image():
    import os
    import subprocess
    import sys

    sums = {}
    for backend in ("egl", "osmesa"):
        env = dict(os.environ, EMBODIA_GL=backend, MUJOCO_GL=backend)
        result = subprocess.run([sys.executable, "-c", RENDER_SCRIPT], env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        sums[backend] = int(result.stdout.split()[-1])
    assert sums["egl"] == sums["osmesa"] > 0


def test_one_renderer_serves_another_batch_of_the_same_scene_and_recorded_states():
    from embodia.sim.render import BatchRenderer, RenderError

    first, second = BatchEnv("cartpole-swingup", num_envs=2), BatchEnv("cartpole-swingup", num_envs=3)
    other = BatchEnv("cheetah-run", num_envs=1)
    try:
        first.reset(seed=0)
        second.reset(seed=1)
        second.sim.qpos[2, 0] = 0.8
        renderer = BatchRenderer(first.sim, width=48, height=32, multisample=0)
        assert renderer.renders_like(second.sim.model) and not renderer.renders_like(other.sim.model)
        renderer.use_sim(second.sim)
        shared = renderer.render(np.array([2, 0]), camera="fixed")
        fresh = second.render([2, 0], camera="fixed", width=48, height=32, multisample=0)
        np.testing.assert_array_equal(shared, fresh)
        sim = second.sim  # a state drawn later, after the sim moved on, gives the same picture
        state, mocap = sim.state[[2]].copy(), (sim.mocap_pos[[2]].copy(), sim.mocap_quat[[2]].copy())
        sim.qpos[2, 0] = -0.8
        later = renderer.render_states([sim.models[2]], state, *mocap, camera="fixed")
        np.testing.assert_array_equal(later[0], fresh[0])
        with pytest.raises(RenderError, match="another scene"):
            renderer.use_sim(other.sim)
        renderer.close()
    finally:
        for env in (first, second, other):
            env.close()


def test_a_frame_sized_offscreen_buffer_draws_the_same_pixels_as_the_models_640x480_one():
    import mujoco

    from embodia.sim.render import BatchRenderer

    env = BatchEnv("cartpole-swingup", num_envs=1)
    try:
        env.reset(seed=3)
        model = env.sim.model
        ours = BatchRenderer(env.sim, width=96, height=72, multisample=0)
        assert ours._renderer._mjr_context.offWidth == 96 and model.vis.global_.offwidth == 640
        model.vis.quality.offsamples = 0
        theirs = mujoco.Renderer(model, height=72, width=96)  # MuJoCo's own buffer, the model's 640x480
        assert theirs._mjr_context.offWidth == 640
        for flag in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION, mujoco.mjtRndFlag.mjRND_SKYBOX):
            theirs.scene.flags[flag] = False  # the fast look BatchRenderer draws
        data = mujoco.MjData(model)
        env.sim.load_data(0, data)
        mujoco.mj_forward(model, data)
        theirs.update_scene(data, camera="fixed")
        np.testing.assert_array_equal(ours.render(np.array([0]), camera="fixed")[0], theirs.render())
        ours.close()
        theirs.close()
    finally:
        env.close()
