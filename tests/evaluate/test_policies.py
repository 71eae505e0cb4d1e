"""Policies from every source through resolve_policy: callables, files, ONNX, experts, random, a server."""

from __future__ import annotations

import numpy as np
import pytest

from embodia.evaluate import resolve_policy, run_suite
from embodia.evaluate.policies import PolicySpecError, RandomPolicy
from .conftest import LQR_SPEC


def test_callable_and_file_specs(tmp_path):
    from .cartpole_lqr import act

    obs = np.array([[0.1, 1.0, 0.05, 0.0, 0.0]])
    assert np.allclose(resolve_policy(act).act(obs), act(obs))
    assert np.allclose(resolve_policy(LQR_SPEC).act(obs), act(obs))
    assert np.allclose(resolve_policy(f"{__package__}.cartpole_lqr:act").act(obs), act(obs))
    assert isinstance(resolve_policy("random"), RandomPolicy)


def test_bad_specs_say_what_is_accepted():
    with pytest.raises(PolicySpecError, match="expert:<task>"):
        resolve_policy("no/such/model")
    with pytest.raises(PolicySpecError, match="cannot import module"):
        resolve_policy("no_such_module_xyz:act")
    with pytest.raises(PolicySpecError, match="no attribute"):
        resolve_policy("numpy:no_such_function")


def test_wrong_action_shape_and_dims_are_named(balance_suite, tmp_path):
    with pytest.raises(ValueError, match=r"returned actions of shape \(4, 5\)"):
        run_suite(balance_suite, "numpy:zeros_like", scenarios=["nominal"], episodes=4)
    from .conftest import write_linear_onnx

    wrong = write_linear_onnx(tmp_path / "wrong.onnx", np.zeros((1, 7)), "other-task")
    with pytest.raises(ValueError, match="obs_dim=7"):
        run_suite(balance_suite, str(wrong), scenarios=["nominal"], episodes=4)


def test_onnx_policy_matches_the_python_lqr(balance_suite, lqr_onnx):
    onnx_run = run_suite(balance_suite, str(lqr_onnx), videos=False, scenarios=["nominal"], episodes=8)
    assert onnx_run.scenarios[0].summary()["success_rate"] == 1.0
    assert onnx_run.policy.endswith("lqr.onnx")


def test_remote_policy_server_gives_the_same_results_as_the_file(balance_suite, lqr_onnx):
    from embodia.serve.server import serve_in_background

    url, stop = serve_in_background(lqr_onnx, port=0)
    try:
        remote = run_suite(balance_suite, url, videos=False, scenarios=["heavy-noise"], episodes=6)
    finally:
        stop()
    local = run_suite(balance_suite, str(lqr_onnx), videos=False, scenarios=["heavy-noise"], episodes=6)
    assert np.allclose(remote.scenarios[0].episodes.episode_return, local.scenarios[0].episodes.episode_return)


def test_expert_policy_reaches_on_arm_reach():
    suite = {"name": "reach", "task": "arm-reach", "episodes": 6, "scenarios": [{"name": "nominal"}]}
    expert = run_suite(suite, "expert:arm-reach", videos=False)
    random = run_suite(suite, "random", videos=False)
    assert expert.scenarios[0].summary()["success_rate"] >= 5 / 6
    assert random.scenarios[0].summary()["success_rate"] <= 1 / 6
