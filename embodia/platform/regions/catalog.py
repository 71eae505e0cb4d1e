"""The region catalog: where jobs can run, under which jurisdiction, with which accelerators at what price.

A catalog is YAML (see the shipped `catalog.yaml`), validated up front; errors name the file and the field.
Each region is a Ray cluster or a labelled node group (`region=<name>`). Whether a region is up or down is
workspace state kept beside the store (`regions down NAME`), layered over the catalog's own `status`.
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from embodia.core.config import read_yaml, validate_config
from embodia.core.errors import UserError

DEFAULT_CATALOG = Path(__file__).resolve().parent / "catalog.yaml"
CPU = "cpu"  # CPU-hours are priced and counted like one more accelerator kind
NAME_RE = r"^[a-z0-9][a-z0-9._-]{0,99}$"


class Resource(BaseModel):
    """A pool of one accelerator kind (or CPUs) in a region: how many and the price per unit-hour."""

    model_config = ConfigDict(extra="forbid")
    count: int = Field(ge=0, le=10_000_000, description="units in the region (accelerators or CPU cores)")
    price_per_hour: float = Field(ge=0, le=10_000, allow_inf_nan=False, description="USD per unit-hour")


class Network(BaseModel):
    """The region's two-tier Ethernet fabric (leaf switches under a spine), for all-reduce estimates."""

    model_config = ConfigDict(extra="forbid")
    accelerators_per_node: int = Field(8, ge=1, le=64, description="accelerators sharing one node (NVLink/PCIe)")
    intra_node_gbps: float = Field(3600.0, gt=0, le=1e6, allow_inf_nan=False, description="within a node, Gbit/s")
    node_gbps: float = Field(400.0, gt=0, le=1e5, allow_inf_nan=False, description="node NIC to its leaf, Gbit/s")
    nodes_per_leaf: int = Field(16, ge=1, le=1024, description="nodes under one leaf switch")
    spine_oversubscription: float = Field(2.0, ge=1, le=64, allow_inf_nan=False,
                                          description="leaf uplink oversubscription (1 = non-blocking)")
    latency_us: float = Field(10.0, gt=0, le=1e5, allow_inf_nan=False, description="one hop's latency, microseconds")


class Region(BaseModel):
    """One region: its jurisdiction (whose data rules apply there), resources, egress price and status."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME_RE, description="region name, also its Ray node label value")
    jurisdiction: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,49}$",
                              description="jurisdiction code whose residency rules the region satisfies (BR, EU, ...)")
    location: str = Field("", max_length=200, description="where it is, for people")
    cpu: Resource = Field(description="CPU cores and the price per CPU-hour")
    accelerators: dict[str, Resource] = Field(default_factory=dict, description="accelerator kind -> pool")
    egress_per_gb: float = Field(ge=0, le=100, allow_inf_nan=False, description="USD per GB leaving the region")
    status: Literal["up", "down"] = Field("up", description="up or down")
    network: Network = Field(default_factory=Network)

    @field_validator("jurisdiction")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    @field_validator("accelerators")
    @classmethod
    def _kind_names(cls, value: dict[str, Resource]) -> dict[str, Resource]:
        for kind in value:
            if not re.match(NAME_RE, kind) or kind == CPU:
                raise ValueError(f"accelerator kind {kind!r}: use lowercase letters, digits, '.', '_' or '-' "
                                 f"(and not {CPU!r}, which is the cpu field)")
        return value

    def pools(self) -> dict[str, Resource]:
        """Every priced pool of the region, CPUs included under 'cpu'."""
        return {CPU: self.cpu, **self.accelerators}


class Catalog(BaseModel):
    """Every region embodia may place jobs in."""

    model_config = ConfigDict(extra="forbid")
    regions: list[Region] = Field(min_length=1, description="the regions")
    home: str = Field("home", description="region where data without a recorded region lives (the local store)")

    @model_validator(mode="after")
    def _unique_and_home(self) -> Catalog:
        names = [region.name for region in self.regions]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"regions: names must be unique; repeated: {', '.join(duplicates)}")
        if self.home not in names:
            raise ValueError(f"home: {self.home!r} is not one of the regions ({', '.join(names)})")
        return self

    @cached_property
    def names(self) -> list[str]:
        """Region names in catalog order (the column order of every placement matrix)."""
        return [region.name for region in self.regions]

    @cached_property
    def kinds(self) -> list[str]:
        """Every pool kind across regions: 'cpu' first, then accelerator kinds sorted."""
        return [CPU] + sorted({kind for region in self.regions for kind in region.accelerators})

    def region(self, name: str) -> Region:
        """The region called `name`, or a UserError listing the valid names."""
        for region in self.regions:
            if region.name == name:
                return region
        raise UserError(f"unknown region {name!r}; known regions: {', '.join(self.names)}")

    def with_status(self, status: dict[str, str]) -> Catalog:
        """A copy with the given regions' status overridden (workspace up/down state over the file's)."""
        for name in status:
            self.region(name)
        regions = [region.model_copy(update={"status": status.get(region.name, region.status)})
                   for region in self.regions]
        return self.model_copy(update={"regions": regions})

    def arrays(self) -> CatalogArrays:
        """The catalog as NumPy arrays over (regions, kinds), built once per placement."""
        kinds = self.kinds
        count = np.zeros((len(self.regions), len(kinds)), dtype=np.int64)
        price = np.full((len(self.regions), len(kinds)), np.inf)
        for r, region in enumerate(self.regions):
            for kind, pool in region.pools().items():
                k = kinds.index(kind)
                count[r, k], price[r, k] = pool.count, pool.price_per_hour
        return CatalogArrays(names=self.names, kinds=kinds, count=count, price=price,
                             egress=np.array([region.egress_per_gb for region in self.regions]),
                             up=np.array([region.status == "up" for region in self.regions]),
                             jurisdiction=[region.jurisdiction for region in self.regions])


class CatalogArrays(BaseModel):
    """(regions, kinds) arrays: unit counts, prices (inf where a region has no such pool), egress, up."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)
    names: list[str]
    kinds: list[str]
    count: np.ndarray  # (R, K) int
    price: np.ndarray  # (R, K) USD per unit-hour, inf = no pool
    egress: np.ndarray  # (R,) USD per GB leaving the region
    up: np.ndarray  # (R,) bool
    jurisdiction: list[str]


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Read and validate a catalog file (the shipped default when `path` is None)."""
    path = Path(path) if path is not None else DEFAULT_CATALOG
    return validate_config(Catalog, read_yaml(path, what="region catalog"), where=f"region catalog {path}")
