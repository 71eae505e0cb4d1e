"""The one table of learning algorithms: name -> kind and where its parts live ("module:attr"), imported only when
that algorithm is asked for (so exporting an MLP does not import the imitation stack). Adding an algorithm is one
entry here and one module beside it."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, Literal

from embodia.core.errors import ConfigError

if TYPE_CHECKING:
    from pydantic import BaseModel
    from torch import nn

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


@dataclass(frozen=True)
class AlgorithmEntry:
    """Where an algorithm's parts live, as "module:attr" strings (resolved by `get_algorithm`)."""

    kind: AlgorithmKind
    config_cls: str
    deployed_actor: str
    trainer_cls: str | None = None
    fit: str | None = None
    policy_from_parts: str | None = None


ALGORITHMS: dict[str, AlgorithmEntry] = {
    "ppo": AlgorithmEntry("rl", "embodia.learn.ppo:PPOConfig", "embodia.learn.ppo:deployed_actor",
                          trainer_cls="embodia.learn.ppo:PPOTrainer"),
    "sac": AlgorithmEntry("rl", "embodia.learn.sac:SACConfig", "embodia.learn.sac:deployed_actor",
                          trainer_cls="embodia.learn.sac:SACTrainer"),
    "bc": AlgorithmEntry("imitation", "embodia.learn.bc:BCConfig", "embodia.learn.bc:deployed_actor",
                         fit="embodia.learn.bc:fit_bc", policy_from_parts="embodia.learn.bc:policy_from_parts"),
    "diffusion": AlgorithmEntry("imitation", "embodia.learn.diffusion:DiffusionConfig",
                                "embodia.learn.diffusion:deployed_actor", fit="embodia.learn.diffusion:fit_diffusion",
                                policy_from_parts="embodia.learn.diffusion:policy_from_parts"),
}


def algorithms(kind: AlgorithmKind | None = None) -> list[str]:
    """Registered algorithm names, of one kind or all (imports nothing)."""
    return [name for name, entry in ALGORITHMS.items() if kind is None or entry.kind == kind]


def get_algorithm(name: Any, kind: AlgorithmKind | None = None) -> Algorithm:
    """The registered algorithm `name`, its module imported now; a `ConfigError` lists the valid names (of `kind`)."""
    entry = ALGORITHMS.get(name) if isinstance(name, str) else None
    if entry is None or (kind is not None and entry.kind != kind):
        which = {"rl": " (RL on a task)", "imitation": " (imitation from a dataset)", None: ""}[kind]
        raise ConfigError(f"unknown algo {name!r}; use one of {', '.join(algorithms(kind))}{which}")
    return _load(name)


@cache
def _load(name: str) -> Algorithm:
    """Import the parts of one registered algorithm (once)."""
    entry = ALGORITHMS[name]
    return Algorithm(name, entry.kind, _resolve(entry.config_cls), _resolve(entry.deployed_actor),
                     trainer_cls=_resolve(entry.trainer_cls), fit=_resolve(entry.fit),
                     policy_from_parts=_resolve(entry.policy_from_parts))


def _resolve(target: str | None) -> Any:
    """The object named by "module:attr" (None stays None)."""
    if target is None:
        return None
    module_name, attr = target.split(":")
    return getattr(importlib.import_module(module_name), attr)
