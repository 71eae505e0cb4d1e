"""Report videos stay cheap: frames at the video's frame rate (not every control step), no MSAA by default, and a
renderer's sample count does not leak into the model other renderers (a camera policy's) are made from."""

import numpy as np
import pytest

from embodia.evaluate import run_suite
from embodia.evaluate.runner import frame_every
from embodia.evaluate.suite import ReportVideoConfig
from embodia.sim.video import read_video
from embodia.tasks import BatchEnv

from .conftest import LQR_SPEC


def test_frames_follow_the_video_rate_capped_by_max_frames():
    assert frame_every(500, 0.01, fps=25, max_frames=400) == 4  # 100 Hz control -> every 4th step at 25 fps
    assert frame_every(500, 0.01, fps=25, max_frames=50) == 11  # the cap wins: ceil(501 / 50)
    assert frame_every(500, 0.05, fps=25, max_frames=1000) == 1  # control slower than the video: every step
    assert ReportVideoConfig().multisample == 0 and ReportVideoConfig().fps == 25


@pytest.mark.parametrize("field", [{"fps": 0}, {"fps": float("nan")}, {"multisample": 17}])
def test_bad_video_settings_are_refused(field):
    with pytest.raises(ValueError):  # pydantic's ValidationError; the suite loader turns it into a SuiteError
        ReportVideoConfig(**field)


def test_suite_videos_are_written_at_the_video_rate(balance_suite, tmp_path):
    suite = balance_suite.model_copy(update={"video": balance_suite.video.model_copy(update={"max_frames": 400})})
    results = run_suite(suite, LQR_SPEC, tmp_path, videos=True, scenarios=["big-push"], episodes=4)
    scenario = results.scenario("big-push")
    index = scenario.replay["best"]["episode"]
    every = frame_every(500, scenario.control_dt_s, 25, 400)
    frames = read_video(tmp_path / scenario.videos["best"])
    length = int(scenario.episodes.length[index])
    assert frames.shape[1:] == (72, 96, 3) and np.ptp(frames) > 0
    assert abs(frames.shape[0] - (length // every + 1)) <= 1  # the reset frame, then every k-th step
    assert all(replay["reproduced"] for replay in scenario.replay.values())


def test_renderer_samples_stay_in_the_renderer():
    env = BatchEnv("cartpole-balance", num_envs=1)
    try:
        samples = env.sim.model.vis.quality.offsamples
        plain = env.render(camera=-1, width=32, height=32, multisample=0)
        assert env.sim.model.vis.quality.offsamples == samples
        smooth = env.render(camera=-1, width=32, height=32)  # the model's samples: a second renderer, not the first
        assert plain.shape == smooth.shape == (1, 32, 32, 3) and len(env._renderers) == 2
    finally:
        env.close()
