"""Config plumbing shared by every stage: YAML files, `--set key=value` overrides, and one-line validation errors.

`build_config` merges (source, values) layers and validates once; `config_error` turns any pydantic
`ValidationError` into a one-line `ConfigError` that names the field (or CLI flag), the value, where it came
from and the allowed range. Every place that validates a config uses these, so errors read the same everywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import yaml
from pydantic import BaseModel, ValidationError

from embodia.core.errors import ConfigError
from embodia.core.paths import require_file

MAX_PROBLEMS = 5


def read_yaml(path: str | Path, *, what: str = "config file", error_cls: type[ConfigError] = ConfigError) -> dict[str, Any]:
    """A YAML mapping from a file, with errors that name the file (missing, a directory, not UTF-8, bad YAML)."""
    path = require_file(path, what, error_cls=error_cls)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as error:
        raise error_cls(f"{what} {path} is not UTF-8 text (byte {error.start}: {error.reason})") from None
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise error_cls(f"{what} {path} is not valid YAML{line}: {problem}") from None
    if not isinstance(data, dict):
        raise error_cls(f"{what} {path} must hold a mapping of field: value, got {type(data).__name__}")
    return data


def parse_set_overrides(items: list[str]) -> dict[str, Any]:
    """`["lr=3e-4", "hidden_sizes=[64,64]"]` -> dict, values parsed as YAML; dotted keys nest."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r} is not key=value; write e.g. --set learning_rate=3e-4")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML; quote strings, write lists as [1, 2]") from None
        if isinstance(value, str):
            value = _maybe_number(value)
        target = overrides
        *parents, leaf = key.strip().split(".")
        for parent in parents:
            nested = target.setdefault(parent, {})
            if not isinstance(nested, dict):
                raise ConfigError(f"--set {item!r}: {parent!r} was already set to a value, not a mapping")
            target = nested
        target[leaf] = value
    return overrides


def _maybe_number(text: str) -> Any:
    # YAML 1.1 reads "3e-4" as a string; a number is what anyone typing it means
    try:
        return float(text)
    except ValueError:
        return text


def build_config(config_cls: type[BaseModel], layers: list[tuple[str, Mapping[str, Any]]]) -> BaseModel:
    """Merge (source, values) layers in order and validate once; errors name the field and its source."""
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for source, values in layers:
        for key, value in values.items():
            merged[key] = value
            origin[key] = source
    return validate_config(config_cls, merged, origin=origin)


def validate_config(config_cls: type[BaseModel], values: Mapping[str, Any], *, origin: Mapping[str, str] | None = None,
                    flags: bool = False, where: str = "", names: Mapping[str, str] | None = None) -> BaseModel:
    """`config_cls.model_validate(values)`, raising a one-line `ConfigError` (see `config_error`) instead."""
    try:
        return config_cls.model_validate(dict(values))
    except ValidationError as error:
        raise config_error(error, config_cls, origin=origin, flags=flags, where=where, names=names) from None


def config_error(error: ValidationError, config_cls: type[BaseModel] | None = None, *,
                 origin: Mapping[str, str] | None = None, flags: bool = False, where: str = "",
                 error_cls: type[ConfigError] = ConfigError, noun: str = "config field",
                 names: Mapping[str, str] | None = None) -> ConfigError:
    """One line naming each bad field (as `--flag` when `flags`), its value, its source and the allowed values.

    `origin` maps top-level field -> where its value came from (a file, `--set`); `where` prefixes the line
    (e.g. the suite file); `names` maps a dotted field path to the flag that sets it (e.g. 'video.encoder': '--codec').
    """
    noun = "option" if flags else noun
    problems = [_describe(problem, config_cls, origin or {}, noun, names or {}) for problem in error.errors()[:MAX_PROBLEMS]]
    more = len(error.errors()) - MAX_PROBLEMS
    text = "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")
    prefix = where or (f"invalid {config_cls.__name__}" if config_cls is not None and not flags else "")
    return error_cls(f"{prefix}: {text}" if prefix else text)


def field_path(loc: tuple, *, flags: bool = False) -> str:
    """('scenarios', 0, 'sensor', 'noise') -> 'scenarios[0].sensor.noise'; as a flag: ('num_envs',) -> '--num-envs'."""
    if flags and loc:
        return "--" + "-".join(str(part) for part in loc).replace("_", "-")
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _describe(problem: Mapping[str, Any], config_cls: type[BaseModel] | None, origin: Mapping[str, str],
              noun: str, names: Mapping[str, str]) -> str:
    loc = tuple(problem["loc"])
    message = _one_line(str(problem["msg"]).removeprefix("Value error, "))
    if not loc:  # a cross-field check: its message names the fields itself
        return message
    flags = noun == "option"
    name = names.get(field_path(loc)) or field_path(loc, flags=flags)
    source = origin.get(str(loc[0]))
    came_from = f" (from {source})" if source else ""
    if problem["type"] == "extra_forbidden":
        known = _known_fields(config_cls, loc)
        return f"unknown {noun} {name!r}{came_from}" + (f"; valid fields: {known}" if known else "")
    if problem["type"] == "missing":
        return f"{name if flags else f'field {name!r}'}: required field is missing; add it"
    label = name if flags else f"field {name!r}{_field_help(config_cls, loc)}"
    value = _short(problem.get("input"))
    return f"{label} = {value}{came_from}: {message}"


def _known_fields(config_cls: type[BaseModel] | None, loc: tuple) -> str:
    model = config_cls
    for part in loc[:-1]:  # walk into nested models where the annotation is a model class
        field = model.model_fields.get(str(part)) if model is not None else None
        annotation = getattr(field, "annotation", None)
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return ", ".join(sorted(model.model_fields)) if model is not None else ""


def _field_help(config_cls: type[BaseModel] | None, loc: tuple) -> str:
    info = config_cls.model_fields.get(str(loc[0])) if config_cls is not None and len(loc) == 1 else None
    return f" ({info.description})" if info is not None and info.description else ""


def _short(value: Any, limit: int = 80) -> str:
    text = _one_line(repr(value))
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _one_line(text: str) -> str:
    return " ".join(text.split())

