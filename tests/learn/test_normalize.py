import numpy as np

from embodia.learn.normalize import ObsNormalizer, RewardScaler, RunningMeanStd


def test_running_mean_std_matches_numpy_over_batches():
    rng = np.random.default_rng(0)
    data = rng.normal(3.0, 2.0, (1000, 4))
    rms = RunningMeanStd((4,), epsilon=0.0)
    rms.count = 0.0
    for chunk in np.array_split(data, 7):
        if rms.count == 0:
            rms.mean, rms.var, rms.count = chunk.mean(0), chunk.var(0), len(chunk)
        else:
            rms.update(chunk)
    np.testing.assert_allclose(rms.mean, data.mean(0), rtol=1e-10)
    np.testing.assert_allclose(rms.var, data.var(0), rtol=1e-10)


def test_obs_normalizer_state_round_trips_and_clips():
    norm = ObsNormalizer(3, clip=2.0)
    norm.update(np.random.default_rng(1).normal(5.0, 0.1, (500, 3)))
    other = ObsNormalizer(3, clip=2.0)
    other.load_state_dict(norm.state_dict())
    obs = np.array([[5.0, 5.0, 100.0]])
    np.testing.assert_allclose(norm(obs), other(obs))
    assert norm(obs)[0, 2] == 2.0
    assert abs(norm(obs)[0, 0]) < 0.2


def test_reward_scaler_resets_return_on_done_and_scales_down_large_rewards():
    scaler = RewardScaler(num_envs=2, gamma=0.9)
    for _ in range(200):
        scaled = scaler(np.array([100.0, 100.0]), np.array([False, True]))
    assert scaler.returns[1] == 0.0 and scaler.returns[0] > 100.0
    assert np.all(np.abs(scaled) < 10.0)


def test_disabled_normalizers_are_identity():
    obs = np.arange(6.0).reshape(2, 3)
    assert ObsNormalizer(3, enabled=False)(obs) is obs
    reward = np.array([3.0, -4.0])
    assert RewardScaler(2, 0.99, enabled=False)(reward, np.zeros(2, bool)) is reward


def test_running_mean_std_update_equals_numpy_mean_and_var_bit_for_bit():
    """The hand-inlined batch statistics are numpy's .mean(0)/.var(0), so training stays seed-for-seed identical."""
    rng = np.random.default_rng(3)
    for batch in (rng.normal(2.0, 3.0, (64, 17)), rng.normal(size=(5, 3)).astype(np.float32),
                  rng.normal(size=64), rng.integers(-5, 5, (8, 2))):
        rms = RunningMeanStd(batch.shape[1:])
        rms.update(batch)
        mean, var, count = batch.mean(axis=0), batch.var(axis=0), len(batch)
        delta = mean - np.zeros(batch.shape[1:])
        total = 1e-4 + count
        expected_var = (np.ones(batch.shape[1:]) * 1e-4 + var * count + delta**2 * 1e-4 * count / total) / total
        np.testing.assert_array_equal(rms.mean, delta * count / total)
        np.testing.assert_array_equal(rms.var, expected_var)


def _array_update(mean, var, count, batch):
    """RunningMeanStd.update's array formula (NumPy scalars and arrays), the reference for the float path."""
    mean_row = np.add.reduce(batch, axis=0, keepdims=True) / len(batch)
    batch_var = np.add.reduce((batch - mean_row) ** 2, axis=0) / len(batch)
    delta = mean_row[0] - mean
    total = count + len(batch)
    m2 = var * count + batch_var * len(batch) + delta**2 * count * len(batch) / total
    return mean + delta * len(batch) / total, m2 / total, total


def test_scalar_statistics_in_python_floats_equal_the_array_formula_bit_for_bit():
    """Reward scaling's running return statistics take a float path; it must not change a single training run."""
    rng = np.random.default_rng(5)
    for num_envs in (1, 3, 4, 8, 13):
        rms = RunningMeanStd(())
        mean, var, count = np.zeros(()), np.ones(()), 1e-4
        for step in range(1000):
            batch = rng.normal(0.0, 1.0, num_envs) * 10.0 ** rng.uniform(-6, 6) + rng.normal() * step
            rms.update(batch)
            mean, var, count = _array_update(mean, var, count, batch)
            assert float(rms.mean) == float(mean) and float(rms.var) == float(var) and rms.count == count
    assert np.shape(rms.state_dict()["mean"]) == ()
