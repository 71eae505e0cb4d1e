import pytest

from embodia.core.config import parse_set_overrides as parse_overrides
from embodia.learn.config import ConfigError
from embodia.learn.trainer import load_config


def test_shipped_task_defaults_are_layered_under_overrides(tmp_path):
    config = load_config("cartpole-balance", "ppo")
    assert config.num_envs == 32 and config.learning_rate == pytest.approx(1e-3)
    file = tmp_path / "c.yaml"
    file.write_text("num_envs: 8\nupdate_epochs: 3\n")
    config = load_config("cartpole-balance", "ppo", file, {"update_epochs": 2}, seed=5)
    assert (config.num_envs, config.update_epochs, config.seed) == (8, 2, 5)


def test_unknown_field_error_names_field_and_source(tmp_path):
    file = tmp_path / "bad.yaml"
    file.write_text("lerning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"unknown config field 'lerning_rate' \(from .*bad.yaml\).*learning_rate"):
        load_config("cartpole-balance", "ppo", file)


def test_bad_value_error_names_field_and_meaning():
    with pytest.raises(ConfigError, match=r"'gamma'.*discount factor.*1.5.*--set"):
        load_config("cartpole-balance", "ppo", overrides={"gamma": 1.5})


def test_cross_field_check_says_how_to_fix():
    with pytest.raises(ConfigError, match="not divisible by num_minibatches=7"):
        load_config("cartpole-balance", "ppo", overrides={"num_minibatches": 7})


def test_unknown_algo_is_rejected():
    with pytest.raises(ConfigError, match="unknown algo 'dqn'"):
        load_config("cartpole-balance", "dqn")


def test_parse_overrides_reads_yaml_values_and_nests_dotted_keys():
    parsed = parse_overrides(["learning_rate=3e-4", "hidden_sizes=[32, 32]", "env_kwargs.task_config={a: 1}", "anneal_lr=false"])
    assert parsed == {"learning_rate": 3e-4, "hidden_sizes": [32, 32], "env_kwargs": {"task_config": {"a": 1}},
                      "anneal_lr": False}
    with pytest.raises(ConfigError, match="not key=value"):
        parse_overrides(["learning_rate"])
