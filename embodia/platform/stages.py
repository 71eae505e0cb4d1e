"""The stages the platform can run, by name: where each one's `run(config, out, *, inputs, reporter)` and
pydantic config live, which inputs it takes and what kind of artifact it makes.

One table for every caller: pipelines validate step configs with it and the job queue's job types
(`embodia.platform.jobtypes`) name these stages' `run` functions. Stage modules are imported on first use.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from pydantic import BaseModel, ConfigDict

from embodia.core.config import validate_config as core_validate_config
from embodia.core.errors import ConfigError, UserError
from embodia.core.manifest import Manifest


@dataclass(frozen=True)
class StageBinding:
    """Where a stage lives and what it consumes/produces."""

    module: str
    config: str | None
    kind: str
    required_inputs: tuple[str, ...] = ()
    optional_inputs: tuple[str, ...] = ()
    run: str = "run"
    check: str | None = None  # a function validating a plain-mapping config, for stages without one config class

    def config_class(self) -> type[BaseModel]:
        """The stage's own pydantic config class (a pass-through mapping when the stage checks a plain dict)."""
        return PlainConfig if self.config is None else self._attribute(self.config)

    def runner(self) -> Callable[..., Manifest]:
        """The stage's `run(config, out, *, inputs, reporter) -> Manifest`."""
        return self._attribute(self.run)

    def _attribute(self, name: str) -> Any:
        try:
            return getattr(importlib.import_module(self.module), name)
        except (ImportError, AttributeError) as error:
            raise RuntimeError(f"stage module {self.module} has no {name} ({error}); embodia is installed "
                               "incompletely or this stage was renamed") from None


class PlainConfig(BaseModel):
    """The config of a stage that takes a plain mapping and checks its own fields when it runs."""

    model_config = ConfigDict(extra="allow")


STAGES: dict[str, StageBinding] = {
    "generate": StageBinding("embodia.data.generate", "GenerateConfig", "dataset"),
    "augment": StageBinding("embodia.data.augment", "AugmentConfig", "dataset", required_inputs=("dataset",)),
    "train": StageBinding("embodia.learn.train", None, "checkpoint", optional_inputs=("dataset",),
                          check="parse_config"),
    "export": StageBinding("embodia.learn.export", None, "model", required_inputs=("checkpoint",)),
    "evaluate": StageBinding("embodia.evaluate.stage", "EvaluateConfig", "report", optional_inputs=("policy",)),
    "compare": StageBinding("embodia.evaluate.compare", "CompareConfig", "comparison", optional_inputs=("a", "b")),
}


def binding(stage: str) -> StageBinding:
    """The binding of a stage name, or a ConfigError listing the known ones."""
    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    return STAGES[stage]


def validate_config(stage: str, config: Mapping[str, Any], where: str = "") -> BaseModel:
    """The stage's config object built from plain data; a bad field is one ConfigError line naming it."""
    stage_binding = binding(stage)
    if stage_binding.config is None and stage_binding.check is not None:
        try:
            stage_binding._attribute(stage_binding.check)(dict(config))
        except UserError as error:
            raise ConfigError(f"{where or stage}: {error}") from None
    return core_validate_config(stage_binding.config_class(), config, where=where or stage)
