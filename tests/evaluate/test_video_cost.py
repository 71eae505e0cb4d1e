"""Report videos stay cheap: frames at the video's frame rate (not every control step), no MSAA by default, states
recorded while episodes run (no replay), one renderer for a whole run, and a renderer's sample count does not leak
into the model other renderers (a camera policy's) are made from. They still show the right episodes, and play."""

import numpy as np
import pytest

from embodia.evaluate import run_suite
from embodia.evaluate.runner import frame_every, make_env
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
    assert all("reproduced" not in replay for replay in scenario.replay.values())  # drawn from the run itself


def test_a_report_video_plays_the_recorded_episode_from_its_reset_state(balance_suite, tmp_path):
    results = run_suite(balance_suite, LQR_SPEC, tmp_path, videos=True, scenarios=["big-push"], episodes=4,
                        report=False)
    scenario, video = results.scenario("big-push"), balance_suite.video
    for label in ("best", "worst"):
        index = scenario.replay[label]["episode"]
        frames = read_video(tmp_path / scenario.videos[label])
        env = make_env(balance_suite, balance_suite.scenarios[1], 1)  # big-push: nothing moves before t = 1 s
        try:
            every = frame_every(env.max_episode_steps, scenario.control_dt_s, video.fps, video.max_frames)
            assert frames.shape == (int(scenario.episodes.length[index]) // every + 1, video.height, video.width, 3)
            env.reset(options={"episode_seeds": scenario.episodes.seeds[index:index + 1]})
            fresh = env.render([0], camera=video.camera, width=video.width, height=video.height, multisample=0)[0]
        finally:
            env.close()
        assert np.abs(frames[0].astype(int) - fresh).mean() < 2.0  # H.264 at crf 23: a few levels at the edges
        assert np.abs(frames[-1].astype(int) - frames[0]).mean() > 0.1  # the episode moves on


def test_replayed_videos_equal_the_recorded_ones(balance_suite, tmp_path, monkeypatch):
    """A sharded run replays best and worst from their seeds (and a run too big to record does too): the same
    episodes, the same pictures, the replay reproduces the recorded returns, and results.json does not differ."""
    from embodia.evaluate import runner

    replays = []
    original = runner.ReportVideos._replay
    monkeypatch.setattr(runner.ReportVideos, "_replay", lambda *args: replays.append(1) or original(*args))
    recorded = run_suite(balance_suite, LQR_SPEC, tmp_path / "recorded", videos=True, scenarios=["big-push"],
                         episodes=4, report=False).scenario("big-push")
    sharded = run_suite(balance_suite, LQR_SPEC, tmp_path / "sharded", videos=True, scenarios=["big-push"],
                        episodes=4, report=False, shards=2).scenario("big-push")
    monkeypatch.setattr(runner, "RECORD_LIMIT_BYTES", 0)
    too_big = run_suite(balance_suite, LQR_SPEC, tmp_path / "too-big", videos=True, scenarios=["big-push"],
                        episodes=4, report=False).scenario("big-push")
    assert len(replays) == 2  # the sharded run and the one too big to record; the first recorded its frames
    for replayed, out in ((sharded, "sharded"), (too_big, "too-big")):
        assert replayed.replay == recorded.replay  # same episodes, seeds, returns, nothing marked not reproduced
        for label in ("best", "worst"):
            ours = read_video(tmp_path / "recorded" / recorded.videos[label])
            theirs = read_video(tmp_path / out / replayed.videos[label])
            assert ours.shape == theirs.shape and np.abs(ours.astype(int) - theirs).mean() < 0.5


def test_one_renderer_draws_every_scenario_of_a_run(balance_suite, tmp_path, monkeypatch):
    from embodia.sim import render

    made = []
    original = render.BatchRenderer.__init__

    def counting_init(self, *args, **kwargs):
        made.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(render.BatchRenderer, "__init__", counting_init)
    results = run_suite(balance_suite, LQR_SPEC, tmp_path, videos=True, scenarios=["nominal", "big-push"],
                        episodes=2, report=False)
    assert len(made) == 1
    assert all((tmp_path / name).is_file() for s in results.scenarios for name in s.videos.values())


def test_renderer_samples_stay_in_the_renderer():
    env = BatchEnv("cartpole-balance", num_envs=1)
    try:
        model = env.sim.model
        samples, buffer = model.vis.quality.offsamples, (model.vis.global_.offwidth, model.vis.global_.offheight)
        plain = env.render(camera=-1, width=32, height=32, multisample=0)  # in a 32x32 offscreen buffer
        assert model.vis.quality.offsamples == samples
        assert (model.vis.global_.offwidth, model.vis.global_.offheight) == buffer == (640, 480)
        smooth = env.render(camera=-1, width=32, height=32)  # the model's samples: a second renderer, not the first
        assert plain.shape == smooth.shape == (1, 32, 32, 3) and len(env._renderers) == 2
    finally:
        env.close()


def test_an_episode_both_best_and_worst_is_encoded_once_into_both_files(balance_suite, tmp_path, monkeypatch):
    from embodia.sim import video

    opened = []
    original = video.VideoWriter.__init__

    def counting_init(self, path, *args, **kwargs):
        opened.append(path)
        original(self, path, *args, **kwargs)

    monkeypatch.setattr(video.VideoWriter, "__init__", counting_init)
    scenario = run_suite(balance_suite, LQR_SPEC, tmp_path, videos=True, scenarios=["big-push"], episodes=1,
                         report=False).scenario("big-push")
    assert scenario.replay["best"]["episode"] == scenario.replay["worst"]["episode"] == 0
    assert len(opened) == 1  # one encoder for the one episode
    best, worst = (tmp_path / scenario.videos[label] for label in ("best", "worst"))
    assert best != worst and best.read_bytes() == worst.read_bytes() and read_video(worst).shape[0] > 1
