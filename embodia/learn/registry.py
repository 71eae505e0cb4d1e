"""The one table of learning algorithms: name -> kind, config class, trainer (RL) or fit (imitation), and the
hooks that rebuild a policy from a checkpoint. Adding an algorithm is one entry here and one module beside it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal

from pydantic import BaseModel
from torch import nn

from embodia.core.errors import ConfigError
from embodia.learn import bc, diffusion, ppo, sac
from embodia.learn.hooks import Trainer
from embodia.learn.il_common import Fitted

AlgorithmKind = Literal["rl", "imitation"]


@dataclass(frozen=True)
class Algorithm:
    """One learning algorithm as the stages see it."""

    name: str
    kind: AlgorithmKind
    config_cls: type[BaseModel]
    deployed_actor: Callable[..., nn.Module]  # (model, normalizer, policy spec) -> stateless obs[, images] -> action
    trainer_cls: Callable[..., Trainer] | None = None  # RL: (config, TrainEnv) -> Trainer
    fit: Callable[..., Fitted] | None = None  # imitation: (dataset, config, reporter=) -> Fitted
    policy_from_parts: Callable[..., nn.Module] | None = None  # imitation: the policy with its chunk queue


ALGORITHMS: dict[str, Algorithm] = {
    "ppo": Algorithm("ppo", "rl", ppo.PPOConfig, ppo.deployed_actor, trainer_cls=ppo.PPOTrainer),
    "sac": Algorithm("sac", "rl", sac.SACConfig, sac.deployed_actor, trainer_cls=sac.SACTrainer),
    "bc": Algorithm("bc", "imitation", bc.BCConfig, bc.deployed_actor, fit=bc.fit_bc,
                    policy_from_parts=bc.policy_from_parts),
    "diffusion": Algorithm("diffusion", "imitation", diffusion.DiffusionConfig, diffusion.deployed_actor,
                           fit=diffusion.fit_diffusion, policy_from_parts=diffusion.policy_from_parts),
}


def algorithms(kind: AlgorithmKind | None = None) -> list[str]:
    """Registered algorithm names, of one kind or all."""
    return [name for name, algo in ALGORITHMS.items() if kind is None or algo.kind == kind]


def get_algorithm(name: Any, kind: AlgorithmKind | None = None) -> Algorithm:
    """The registered algorithm `name`; a `ConfigError` lists the valid names (of `kind`, when given)."""
    algorithm = ALGORITHMS.get(name) if isinstance(name, str) else None
    if algorithm is None or (kind is not None and algorithm.kind != kind):
        which = {"rl": " (RL on a task)", "imitation": " (imitation from a dataset)", None: ""}[kind]
        raise ConfigError(f"unknown algo {name!r}; use one of {', '.join(algorithms(kind))}{which}")
    return algorithm
