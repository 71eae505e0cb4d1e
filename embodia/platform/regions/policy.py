"""Placement policies as YAML config: data residency, accelerator/export rules, job needs, tenant quotas and budgets.

Residency and accelerator rules are hard constraints, turned here into boolean masks over regions and pool
kinds once per placement (`PolicyMasks`), so that placement never ranks a region a rule forbids.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from embodia.core.config import read_yaml, validate_config
from embodia.core.errors import ConfigError
from embodia.platform.regions.catalog import CPU, Catalog

DEFAULT_POLICY = Path(__file__).resolve().parent / "policy.yaml"


class ResidencyRule(BaseModel):
    """Where data under one jurisdiction may be read and its derived artifacts and logs stored."""

    model_config = ConfigDict(extra="forbid")
    jurisdictions: list[str] = Field(default_factory=list, description="region jurisdictions allowed")
    regions: list[str] = Field(default_factory=list, description="region names allowed besides those")

    @field_validator("jurisdictions")
    @classmethod
    def _upper(cls, value: list[str]) -> list[str]:
        return [item.upper() for item in value]


class JobNeeds(BaseModel):
    """What a job type needs: any one of `kinds`, `count` units of it, for about `hours`."""

    model_config = ConfigDict(extra="forbid")
    kinds: list[str] = Field(min_length=1, description="pool kinds that can run it (cpu, l4, a100, h100, ...)")
    count: int = Field(1, ge=1, le=100_000, description="units of the kind (accelerators, or CPU cores)")
    hours: float = Field(1.0, gt=0, le=10_000, allow_inf_nan=False, description="expected run time, hours")
    allreduce_gb: float = Field(0.0, ge=0, le=10_000, allow_inf_nan=False,
                                description="data-parallel gradients all-reduced each step, GB (0: none)")
    step_s: float = Field(0.0, ge=0, le=86_400, allow_inf_nan=False,
                          description="compute seconds per step between all-reduces")


class Accelerators(BaseModel):
    """Export rules: region -> the only pool kinds allowed to run there."""

    model_config = ConfigDict(extra="forbid")
    allowed: dict[str, list[str]] = Field(default_factory=dict, description="region -> allowed pool kinds")


class Tenant(BaseModel):
    """A project's caps (None = no cap)."""

    model_config = ConfigDict(extra="forbid")
    budget_usd: float | None = Field(None, ge=0, le=1e12, allow_inf_nan=False, description="total spend cap, USD")
    max_accelerators: int | None = Field(None, ge=0, le=10_000_000, description="accelerators held at once")


class PlacementPolicy(BaseModel):
    """Every placement rule."""

    model_config = ConfigDict(extra="forbid")
    residency: dict[str, ResidencyRule] = Field(default_factory=dict, description="jurisdiction tag -> rule")
    accelerators: Accelerators = Field(default_factory=Accelerators)
    jobs: dict[str, JobNeeds] = Field(default_factory=lambda: {"default": JobNeeds(kinds=[CPU])},
                                      description="job type -> needs ('default' for the rest)")
    tenants: dict[str, Tenant] = Field(default_factory=dict, description="project -> caps ('default' for the rest)")
    queue_cost_per_hour: float = Field(0.5, ge=0, le=1e6, allow_inf_nan=False,
                                       description="USD per hour of expected queueing")

    @field_validator("residency")
    @classmethod
    def _upper_keys(cls, value: dict[str, ResidencyRule]) -> dict[str, ResidencyRule]:
        return {key.upper(): rule for key, rule in value.items()}

    @model_validator(mode="after")
    def _has_default_job(self) -> PlacementPolicy:
        if "default" not in self.jobs:
            raise ValueError("jobs: add a 'default' entry (the needs of job types not listed)")
        return self

    def needs(self, job_type: str) -> JobNeeds:
        """What a job of this type needs."""
        return self.jobs.get(job_type) or self.jobs["default"]

    def tenant(self, project: str) -> Tenant:
        """The caps of a project."""
        return self.tenants.get(project) or self.tenants.get("default") or Tenant()

    def check_against(self, catalog: Catalog, where: str = "policy") -> None:
        """Every region and kind the policy names exists in the catalog (a typo would silently allow nothing)."""
        names, kinds = set(catalog.names), set(catalog.kinds)
        for tag, rule in self.residency.items():
            for name in rule.regions:
                if name not in names:
                    raise ConfigError(f"{where}: residency.{tag}.regions names unknown region {name!r}; "
                                      f"known: {', '.join(catalog.names)}")
        for name, allowed in self.accelerators.allowed.items():
            if name not in names:
                raise ConfigError(f"{where}: accelerators.allowed names unknown region {name!r}; "
                                  f"known: {', '.join(catalog.names)}")
            _check_kinds(allowed, kinds, f"{where}: accelerators.allowed.{name}")
        for job_type, needs in self.jobs.items():
            _check_kinds(needs.kinds, kinds, f"{where}: jobs.{job_type}.kinds")

    def residency_mask(self, catalog: Catalog, tags: Iterable[str]) -> np.ndarray:
        """(R,) bool: regions where data under all of `tags` may be read (no tags: everywhere)."""
        allowed = np.ones(len(catalog.regions), dtype=bool)
        for tag in tags:
            rule = self.residency.get(tag.upper()) or ResidencyRule(jurisdictions=[tag.upper()])
            allowed &= np.array([region.name in rule.regions or region.jurisdiction in rule.jurisdictions
                                 for region in catalog.regions])
        return allowed

    def export_mask(self, catalog: Catalog) -> np.ndarray:
        """(R, K) bool: pool kind k may run in region r under the export rules."""
        kinds = catalog.kinds
        mask = np.ones((len(catalog.regions), len(kinds)), dtype=bool)
        for r, region in enumerate(catalog.regions):
            allowed = self.accelerators.allowed.get(region.name)
            if allowed is not None:
                mask[r] = [kind in allowed for kind in kinds]
        return mask


def _check_kinds(listed: list[str], known: set[str], where: str) -> None:
    for kind in listed:
        if kind not in known:
            raise ConfigError(f"{where}: unknown pool kind {kind!r}; the catalog has {', '.join(sorted(known))}")


def load_policy(path: str | Path | None = None, catalog: Catalog | None = None) -> PlacementPolicy:
    """Read and validate a policy file (the shipped default when None), checked against `catalog` if given."""
    path = Path(path) if path is not None else DEFAULT_POLICY
    policy = validate_config(PlacementPolicy, read_yaml(path, what="placement policy"),
                             where=f"placement policy {path}")
    if catalog is not None:
        policy.check_against(catalog, where=f"placement policy {path}")
    return policy


