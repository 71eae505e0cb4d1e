"""Pipelines: a YAML DAG of named steps whose results are cached, registered artifacts.

```yaml
name: quickstart
steps:
  demos:  {type: generate, config: {task: arm-pick-place, episodes: 20}}
  policy: {type: train, inputs: {dataset: demos}, config: {algo: bc, task: arm-pick-place}}
  gate:   {type: gate, inputs: {candidate: onnx, baseline: "model:pick@production"}, config: {suite: arm-pick-place}}
```
An input is another step's name (its output) or a registry reference (`model:pick@production`,
`dataset:sha256:1a2b…`). Every step's config is validated up front with its stage's own pydantic config.
A step's cache key hashes its type, effective config, input content hashes and the embodia version; a key
already in the registry is a hit and reuses that artifact. `embodia.platform.runner` runs the DAG;
`embodia.platform.steps` says what each step type does.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from embodia.core.config import validate_config
from embodia.core.errors import ConfigError
from embodia.core.manifest import package_versions
from embodia.platform import stages

STAGE_STEPS = ("generate", "augment", "train", "export", "evaluate")
PLATFORM_STEPS = ("gate", "register", "deploy")
STEP_TYPES = STAGE_STEPS + PLATFORM_STEPS
REF_PREFIXES = ("model:", "dataset:", "checkpoint:", "report:", "comparison:", "gate:", "other:", "sha256:")


# ---------------------------------------------------------------------------------------------- the file format
class StepSpec(BaseModel):
    """One step as written in the YAML file."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["generate", "augment", "train", "export", "evaluate", "gate", "register", "deploy"] = Field(
        description="what the step does")
    config: dict[str, Any] = Field(default_factory=dict, description="the stage's config fields")
    inputs: dict[str, str] = Field(default_factory=dict,
                                   description="input name -> step name or registry reference (model:pick@production)")


class PipelineSpec(BaseModel):
    """A pipeline file: a name and its named steps."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="pipeline name (letters, digits, .-_)")
    description: str = ""
    project: str = Field("default", description="queue project whose quotas the pipeline's jobs count against")
    steps: dict[str, StepSpec] = Field(min_length=1)


class GateConfig(BaseModel):
    """`gate`: pass or stop the pipeline on the compare stage's verdict against a registry model."""

    model_config = ConfigDict(extra="allow")
    block_on: list[Literal["worse", "indistinguishable", "better"]] = Field(
        default_factory=lambda: ["worse"], description="verdicts that stop the pipeline")


class RegisterConfig(BaseModel):
    """`register`: make the model a version of `name` and move `alias` to it (only when its gate passed)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="model name in the registry")
    alias: str | None = Field(None, description="alias to move to the new version, e.g. production")
    note: str = Field("", description="free text kept on the model version")


class DeployConfig(BaseModel):
    """`deploy`: serve the model as a supervised `embodia serve` process."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="deployment name")
    host: str = Field("127.0.0.1", description="interface to listen on")
    port: int = Field(0, ge=0, le=65535, description="TCP port (0 picks a free one, kept across restarts)")


PLATFORM_CONFIGS: dict[str, type[BaseModel]] = {"gate": GateConfig, "register": RegisterConfig,
                                                "deploy": DeployConfig}
PLATFORM_INPUTS = {"gate": (("candidate", "baseline"), ()), "register": (("model",), ("gate", "report")),
                   "deploy": (("model",), ())}


# ---------------------------------------------------------------------------------------------- validated form
@dataclass
class Step:
    """A validated step: its typed config and inputs split into step outputs and registry references."""

    name: str
    type: str
    config: BaseModel
    step_inputs: dict[str, str] = field(default_factory=dict)
    registry_inputs: dict[str, str] = field(default_factory=dict)

    @property
    def needs(self) -> set[str]:
        """The steps this one waits for."""
        return set(self.step_inputs.values())

    def effective_config(self) -> dict[str, Any]:
        """The config after defaults, as plain JSON data (what the cache key hashes)."""
        return self.config.model_dump(mode="json")


@dataclass
class Pipeline:
    """A validated pipeline: steps in a runnable (topological) order."""

    name: str
    steps: dict[str, Step]
    order: list[str]
    source: str = "<pipeline>"
    project: str = "default"
    text: str = ""  # the YAML it was read from (kept with each recorded run)

    def dependents(self, names: set[str]) -> set[str]:
        """`names` and every step downstream of them."""
        found = set(names)
        for name in self.order:
            if self.steps[name].needs & found:
                found.add(name)
        return found


def load_pipeline(path: str | Path) -> Pipeline:
    """Read and validate a pipeline YAML file; every problem is one ConfigError line naming step and field."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"pipeline file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    pipeline = parse_pipeline(data, str(path))
    pipeline.text = path.read_text()
    return pipeline


def parse_pipeline(data: Any, source: str = "<pipeline>") -> Pipeline:
    """Validate plain data (a parsed YAML file) into a Pipeline."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a pipeline is a mapping with 'name' and 'steps', got {type(data).__name__}")
    try:
        spec = PipelineSpec.model_validate(data)
    except ValidationError as error:
        raise ConfigError(f"{source}: {_spec_error(error)}") from None
    steps = {name: _validate_step(name, step, spec, source) for name, step in spec.steps.items()}
    return Pipeline(name=spec.name, steps=steps, order=_topological_order(steps, source), source=source,
                    project=spec.project)


def _spec_error(error: ValidationError) -> str:
    first = error.errors()[0]
    loc = [str(part) for part in first["loc"]]
    if len(loc) >= 2 and loc[0] == "steps":  # steps.<name>.<field>...
        where = f"step {loc[1]!r}: {'.'.join(loc[2:]) or '(whole step)'}"
        return f"{where}: {first['msg']}" + _allowed(loc, first)
    return f"{'.'.join(loc) or '(top level)'}: {first['msg']}"


def _allowed(loc: list[str], first: dict) -> str:
    if loc[-1] == "type":
        return f" (types: {', '.join(STEP_TYPES)})"
    return " (step fields: type, config, inputs)" if first["type"] == "extra_forbidden" else ""


def _validate_step(name: str, spec: StepSpec, pipeline: PipelineSpec, source: str) -> Step:
    where = f"{source}: step {name!r} ({spec.type})"
    fields = _gate_fields(spec.config, where) if spec.type == "gate" else spec.config
    config = _validate_config(spec.type, fields, where)
    step = Step(name=name, type=spec.type, config=config)
    for input_name, ref in spec.inputs.items():
        if ref in pipeline.steps:
            if ref == name:
                raise ConfigError(f"{where}: inputs.{input_name}: a step cannot read its own output")
            step.step_inputs[input_name] = ref
        elif ref.startswith(REF_PREFIXES):
            step.registry_inputs[input_name] = ref
        else:
            raise ConfigError(f"{where}: inputs.{input_name}: {ref!r} is neither a step of this pipeline "
                              f"({', '.join(pipeline.steps)}) nor a registry reference (model:NAME@ALIAS, "
                              "dataset:sha256:<hex>)")
    _check_input_names(step, where)
    return step


def _validate_config(step_type: str, config: dict[str, Any], where: str) -> BaseModel:
    if step_type in PLATFORM_CONFIGS:
        return validate_config(PLATFORM_CONFIGS[step_type], config, where=where)
    return stages.validate_config(step_type, config, where)


def _gate_fields(config: dict[str, Any], where: str) -> dict[str, Any]:
    """A gate's config is the compare stage's config (checked now, defaults filled in) plus `block_on`."""
    compare = stages.validate_config("compare", {k: v for k, v in config.items() if k != "block_on"}, where)
    return compare.model_dump(mode="json") | ({"block_on": config["block_on"]} if "block_on" in config else {})


def input_names(step_type: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(required, optional) input names of a step type."""
    if step_type in PLATFORM_INPUTS:
        return PLATFORM_INPUTS[step_type]
    binding = stages.binding(step_type)
    return binding.required_inputs, binding.optional_inputs


def _check_input_names(step: Step, where: str) -> None:
    required, optional = input_names(step.type)
    given = set(step.step_inputs) | set(step.registry_inputs)
    missing = [name for name in required if name not in given]
    unknown = sorted(given - set(required) - set(optional))
    expected = ", ".join([*required, *(f"{name} (optional)" for name in optional)]) or "none"
    if missing:
        raise ConfigError(f"{where}: inputs.{missing[0]}: missing (inputs of {step.type}: {expected})")
    if unknown:
        raise ConfigError(f"{where}: inputs.{unknown[0]}: not an input of {step.type} (inputs: {expected})")


def _topological_order(steps: dict[str, Step], source: str) -> list[str]:
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = " -> ".join(path[path.index(name):] + [name])
            raise ConfigError(f"{source}: steps form a cycle ({cycle}); inputs must point to earlier steps")
        state[name] = "visiting"
        for needed in sorted(steps[name].needs):
            visit(needed, path + [name])
        state[name] = "done"
        order.append(name)

    for name in steps:
        visit(name, [])
    return order


# ---------------------------------------------------------------------------------------------- cache keys
def cache_key(step: Step, input_hashes: dict[str, str]) -> str:
    """sha256 of the step type, effective config, input content hashes and embodia version."""
    payload = {"type": step.type, "config": step.effective_config(), "inputs": dict(sorted(input_hashes.items())),
               "embodia": package_versions().get("embodia", "unknown")}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass
class StepOutput:
    """What a finished (or cached) step hands to the steps after it."""

    sha256: str
    path: Path
    kind: str
    ref: str = ""
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepResult:
    """How a step ended in one run of a pipeline."""

    name: str
    type: str
    status: Literal["cached", "ran", "blocked", "skipped", "failed"]
    output: StepOutput | None = None
    key: str = ""
    seconds: float = 0.0
    message: str = ""


@dataclass
class PlannedStep:
    """One row of a dry run: hit, miss, forced, or 'after X' when an upstream step must run first."""

    name: str
    type: str
    status: Literal["hit", "miss", "forced", "pending"]
    key: str = ""
    detail: str = ""


def default_parallelism() -> int:
    """Steps run at once: the machine's cores (at least one)."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
