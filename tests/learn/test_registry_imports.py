"""The algorithm registry imports an algorithm's module only when that algorithm is asked for, so rebuilding an RL
actor (export, serve) imports neither the imitation stack (pyarrow, MuJoCo) nor Gymnasium."""

import subprocess
import sys

import pytest

from embodia.core.errors import ConfigError
from embodia.learn.registry import algorithms, get_algorithm


def modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running `code`."""
    done = subprocess.run([sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sys.modules))"],
                          capture_output=True, text=True, timeout=300, check=True)
    return set(done.stdout.split())


def test_listing_algorithms_imports_none_of_them():
    loaded = modules_after("from embodia.learn.registry import algorithms\nassert algorithms('rl') == ['ppo', 'sac']")
    assert not {"torch", "pydantic", "embodia.learn.ppo", "embodia.learn.bc"} & loaded


def test_rebuilding_a_ppo_actor_loads_ppo_only():
    loaded = modules_after("from embodia.learn.registry import get_algorithm\nget_algorithm('ppo').deployed_actor")
    assert "embodia.learn.ppo" in loaded
    assert not {"embodia.learn.bc", "embodia.learn.diffusion", "embodia.learn.sac", "embodia.learn.il_common",
                "embodia.learn.vec_env", "pyarrow", "mujoco", "gymnasium"} & loaded


def test_entries_resolve_to_their_parts():
    ppo, bc = get_algorithm("ppo", kind="rl"), get_algorithm("bc")
    assert ppo.trainer_cls.__name__ == "PPOTrainer" and ppo.fit is None and ppo.config_cls.__name__ == "PPOConfig"
    assert bc.kind == "imitation" and bc.fit.__name__ == "fit_bc" and bc.trainer_cls is None
    assert get_algorithm("ppo") is ppo  # imported once
    assert algorithms() == ["ppo", "sac", "bc", "diffusion"]


def test_unknown_or_wrong_kind_lists_the_valid_names():
    with pytest.raises(ConfigError, match="unknown algo 'bc'; use one of ppo, sac"):
        get_algorithm("bc", kind="rl")
    with pytest.raises(ConfigError, match="unknown algo 3"):
        get_algorithm(3)
