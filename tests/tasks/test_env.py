"""BatchEnv: noisy episodes replay from their seed alone; state_dict restores a batch exactly."""

import numpy as np

from embodia.tasks import BatchEnv

NOISY = {"obs_noise_std": 0.05, "action_noise_std": 0.2, "body_mass_scale": (0.7, 1.3)}


def run_episode(env: BatchEnv, seeds: np.ndarray, actions: np.ndarray) -> np.ndarray:
    obs, _ = env.reset(options={"episode_seeds": seeds})
    trace = [obs]
    for action in actions:
        obs, *_ = env.step(np.repeat(action[None], env.num_envs, axis=0))
        trace.append(obs)
    return np.stack(trace)  # (steps + 1, num_envs, obs_dim)


def test_a_noisy_episode_is_the_same_alone_or_inside_a_bigger_batch():
    actions = np.random.default_rng(0).uniform(-1, 1, (15, 6))
    alone = run_episode(BatchEnv("cheetah-run", 1, randomization=NOISY), np.array([42]), actions)
    batched = run_episode(BatchEnv("cheetah-run", 4, randomization=NOISY), np.array([7, 42, 9, 3]), actions)
    np.testing.assert_array_equal(alone[:, 0], batched[:, 1])


def test_state_dict_restores_a_batch_exactly():
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (30, 3, 3))
    source = BatchEnv("arm-reach", 3, seed=1, randomization=NOISY, max_episode_steps=10)
    source.reset(seed=1)
    for action in actions[:10]:
        source.step(action)
    saved = source.state_dict()
    expected = [source.step(action)[0] for action in actions[10:]]

    restored = BatchEnv("arm-reach", 3, seed=99, randomization=NOISY, max_episode_steps=10)
    restored.reset(seed=99)
    restored.load_state_dict(saved)
    for action, obs in zip(actions[10:], expected):
        np.testing.assert_array_equal(restored.step(action)[0], obs)
