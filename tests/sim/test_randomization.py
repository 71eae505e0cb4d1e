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


def test_per_name_scales_and_payload_apply_only_to_the_named_parts():
    dr = {"body_mass": {"torso": (2.0, 3.0)}, "geom_friction": {"bfoot|ffoot": (0.2, 0.3)},
          "joint_damping": {"bthigh": (4.0, 5.0)}, "actuator_gain": {"f.*": (0.5, 0.6)}}
    env = BatchEnv("cheetah-run", num_envs=4, randomization=dr)
    env.reset(seed=0)
    model, nominal = env.model, env.sim.nominal
    torso, bthigh = model.body("torso").id, model.body("bthigh").id
    for m in env.sim.models:
        assert 2.0 <= m.body_mass[torso] / nominal.body_mass[torso] <= 3.0
        assert m.body_mass[bthigh] == nominal.body_mass[bthigh]
        feet = [model.geom(name).id for name in ("bfoot", "ffoot")]
        assert np.all((m.geom_friction[feet, 0] / nominal.geom_friction[feet, 0] >= 0.2 - 1e-12))
        assert m.geom_friction[model.geom("torso").id, 0] == nominal.geom_friction[model.geom("torso").id, 0]
        dof = model.jnt_dofadr[model.joint("bthigh").id]
        assert 4.0 <= m.dof_damping[dof] / nominal.dof_damping[dof] <= 5.0
        front = [i for i in range(model.nu) if model.actuator(i).name.startswith("f")]
        back = [i for i in range(model.nu) if model.actuator(i).name.startswith("b")]
        assert np.all(m.actuator_gainprm[front, 0] <= 0.6 * nominal.actuator_gainprm[front, 0] + 1e-12)
        assert np.all(m.actuator_gainprm[back, 0] == nominal.actuator_gainprm[back, 0])
    assert np.std([m.body_mass[torso] for m in env.sim.models]) > 0
    env.close()


def test_payload_adds_mass_on_a_body():
    env = BatchEnv("cheetah-run", num_envs=2, randomization={"payload_mass": {"torso": (2.5, 2.5)}})
    env.reset(seed=0)
    torso = env.model.body("torso").id
    assert all(m.body_mass[torso] == pytest.approx(env.sim.nominal.body_mass[torso] + 2.5) for m in env.sim.models)


@pytest.mark.parametrize("field, name, kind", [("body_mass", "torsoo", "body"), ("geom_friction", "fooot", "geom"),
                                               ("joint_damping", "knee", "joint"), ("actuator_gain", "nope", "actuator"),
                                               ("payload_mass", "torsoo", "body")])
def test_unknown_names_are_rejected_with_the_models_names(field, name, kind):
    value = (1.0, 1.0) if field == "payload_mass" else (0.9, 1.1)
    with pytest.raises(ValueError, match=rf"unknown {kind} '{name}'; this model has (bodies|{kind}s) \[.*'"):
        BatchEnv("cheetah-run", num_envs=1, randomization={field: {name: value}})


@pytest.mark.parametrize("field, value, message", [
    ("body_mass_scale", (-1.0, -0.5), r"\(0, 10\]"), ("actuator_gain_scale", (1.0, 1e12), r"\(0, 10\]"),
    ("friction_scale", (0.0, 1.0), r"\(0, 10\]"), ("gravity_z", (-1e6, -9.8), "gravity"),
    ("obs_noise_std", float("inf"), "finite"), ("init_qvel_noise", -0.1, "greater than or equal"),
    ("body_mass", {"torso": (0.5, 20.0)}, r"\(0, 10\]"), ("payload_mass", {"torso": (-1.0, 0.0)}, "payload"),
])
def test_extreme_or_negative_ranges_are_refused(field, value, message):
    with pytest.raises(ValidationError, match=message):
        DomainRandomization.model_validate({field: value})


def test_env_errors_name_the_field_and_list_valid_fields_without_a_pydantic_dump():
    with pytest.raises(ValueError) as caught:
        BatchEnv("cheetah-run", num_envs=1, randomization={"body_mass_scael": (0.9, 1.1)})
    message = str(caught.value)
    assert "unknown field 'body_mass_scael'; valid fields:" in message and "body_mass_scale" in message
    assert "pydantic" not in message and "\n" not in message


UNSTABLE = """<mujoco><option timestep="0.01"/><worldbody><body><joint name="j" type="slide" axis="1 0 0"/>
  <geom size="0.1" mass="0.001"/></body></worldbody>
  <actuator><position name="servo" joint="j" kp="1000" ctrlrange="-1 1"/></actuator></mujoco>"""


@pytest.mark.parametrize("randomization, cause", [
    ({"actuator_gain_scale": (5.0, 10.0)}, r"randomization settings \{'actuator_gain_scale': \(5.0, 10.0\)\}"),
    (None, "the model itself is unstable"),
])
def test_a_run_where_envs_keep_diverging_stops_and_names_the_setting(randomization, cause):
    from embodia.sim import BatchSim, load_model
    from embodia.sim.batch import DIVERGENCE_WINDOW, episode_rngs

    sim = BatchSim(load_model(UNSTABLE), 4, randomization=randomization)
    sim.reset(np.arange(4), episode_rngs(np.arange(4)))
    with pytest.raises(ValueError, match=rf"physics diverged in \d+% of env-steps.*{cause}"):
        for _ in range(DIVERGENCE_WINDOW):
            sim.step(np.ones((4, 1)))


def test_a_healthy_run_with_rare_divergence_goes_on():
    from embodia.sim.batch import DIVERGENCE_WINDOW

    env = BatchEnv("cartpole-swingup", num_envs=8)
    env.reset(seed=0)
    for step in range(2 * DIVERGENCE_WINDOW):
        if step % 10 == 0:  # one env in eight blows up every tenth step: rare enough to keep going
            env.sim.state[0, env.sim.layout["qvel"]] = np.nan
        env.step(np.zeros((8, 1)))
    assert env.sim.divergence_count >= 10
