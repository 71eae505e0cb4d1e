"""Domain randomization: ranges respected, per-env, validated."""

import numpy as np
import pytest
from pydantic import ValidationError

from embodia.sim import DomainRandomization
from embodia.tasks import BatchEnv


def test_sampled_physics_stay_inside_their_ranges_and_differ_per_env():
    dr = DomainRandomization(body_mass_scale=(0.5, 1.5), friction_scale=(0.8, 1.2), joint_damping_scale=(0.9, 1.1),
                             actuator_gain_scale=(0.7, 1.3), gravity_z=(-10.5, -9.0), action_latency_steps=(0, 3))
    env = BatchEnv("cheetah-run", num_envs=16, randomization=dr)
    env.reset(seed=3)
    nominal = env.sim.nominal
    mass = np.array([m.body_mass[1] / nominal.body_mass[1] for m in env.sim.models])
    friction = np.array([m.geom_friction[0, 0] / nominal.geom_friction[0, 0] for m in env.sim.models])
    gain = np.array([m.actuator_gainprm[0, 0] / nominal.actuator_gainprm[0, 0] for m in env.sim.models])
    gravity = np.array([m.opt.gravity[2] for m in env.sim.models])
    for values, (low, high) in [(mass, (0.5, 1.5)), (friction, (0.8, 1.2)), (gain, (0.7, 1.3)), (gravity, (-10.5, -9.0))]:
        assert values.min() >= low and values.max() <= high
        assert values.std() > 0.01 * (high - low)
    assert set(env.sim.latency.tolist()) <= {0, 1, 2, 3} and len(set(env.sim.latency.tolist())) > 1
    assert env.model.body_mass[1] == nominal.body_mass[1]  # the nominal model is never mutated


def test_action_latency_delays_the_applied_control():
    env = BatchEnv("cartpole-swingup", num_envs=1, randomization={"action_latency_steps": (2, 2)})
    env.reset(seed=0)
    applied = []
    for value in [0.1, 0.2, 0.3, 0.4]:
        env.step(np.array([[value]]))
        applied.append(env.sim.ctrl[0, 0])
    assert applied == pytest.approx([0.1, 0.1, 0.1, 0.2])  # the first command holds until the delay has passed


def test_observation_noise_is_added():
    clean = BatchEnv("cartpole-swingup", num_envs=8).reset(seed=1)[0]
    noisy = BatchEnv("cartpole-swingup", num_envs=8, randomization={"obs_noise_std": 0.5}).reset(seed=1)[0]
    assert 0.2 < np.std(noisy - clean) < 0.8


@pytest.mark.parametrize("field, value", [("body_mass_scale", (1.5, 0.5)), ("friction_scale", (0, float("nan"))),
                                          ("obs_noise_std", -1.0), ("no_such_field", 1.0)])
def test_bad_randomization_config_names_the_field(field, value):
    with pytest.raises(ValidationError, match=field):
        DomainRandomization.model_validate({field: value})
