"""Region catalog and placement policy: the shipped files load, and every bad field is named in one line."""

from __future__ import annotations

import numpy as np
import pytest

from embodia.core.errors import ConfigError, UserError
from embodia.platform.regions.catalog import load_catalog
from embodia.platform.regions.policy import load_policy

SHIPPED = {"home", "sa-brazil", "eu-france", "eu-netherlands", "mx-mexico", "kr-seoul", "jp-tokyo", "my-johor",
           "ae-dubai"}


def test_the_shipped_catalog_and_policy_cover_the_seed_regions():
    catalog = load_catalog()
    assert set(catalog.names) == SHIPPED and catalog.home == "home"
    arrays = catalog.arrays()
    assert arrays.kinds[0] == "cpu" and arrays.count.shape == (9, len(arrays.kinds))
    assert np.isinf(arrays.price[catalog.names.index("mx-mexico"), arrays.kinds.index("h100")])
    policy = load_policy(catalog=catalog)
    assert policy.needs("train").kinds == ["h100", "a100", "l4"] and policy.needs("unlisted").kinds == ["cpu"]
    export = policy.export_mask(catalog)
    assert not export[catalog.names.index("ae-dubai"), arrays.kinds.index("h100")]
    assert export[catalog.names.index("eu-france")].all()


def test_residency_allows_only_the_listed_jurisdictions_and_regions():
    catalog = load_catalog()
    policy = load_policy(catalog=catalog)

    def allowed(*tags):
        return {n for n, ok in zip(catalog.names, policy.residency_mask(catalog, tags)) if ok}

    assert allowed("BR") == {"sa-brazil"}
    assert allowed("EU") == {"eu-france", "eu-netherlands"}
    assert allowed("JP") == {"jp-tokyo", "kr-seoul"}
    assert allowed("JP", "EU") == set()  # bound by both rules: nowhere
    assert allowed("ZZ") == set()  # a tag without a rule: only regions of that jurisdiction (none here)
    assert allowed() == SHIPPED


def _write(tmp_path, text: str):
    path = tmp_path / "catalog.yaml"
    path.write_text(text)
    return path


GOOD = """home: home
regions:
  - {name: home, jurisdiction: HOME, cpu: {count: 4, price_per_hour: 0}, egress_per_gb: 0}
  - name: eu-x
    jurisdiction: eu
    cpu: {count: 8, price_per_hour: 0.05}
    accelerators: {l4: {count: 2, price_per_hour: 1.0}}
    egress_per_gb: 0.1
"""


@pytest.mark.parametrize(("change", "named"), [
    (("count: 2", "count: -2"), "regions[1].accelerators.l4.count"),
    (("price_per_hour: 1.0", "price_per_hour: .nan"), "regions[1].accelerators.l4.price_per_hour"),
    (("egress_per_gb: 0.1", "egress_per_gb: lots"), "regions[1].egress_per_gb"),
    (("name: eu-x", "name: EU X"), "regions[1].name"),
    (("jurisdiction: eu\n", "jurisdiction: eu\n    colour: blue\n"), "regions[1].colour"),
    (("home: home", "home: nowhere"), "home"),
    (("name: eu-x", "name: home"), "repeated: home"),
])
def test_a_bad_catalog_field_is_named_with_the_file(tmp_path, change, named):
    assert load_catalog(_write(tmp_path, GOOD)).region("eu-x").jurisdiction == "EU"
    path = _write(tmp_path, GOOD.replace(*change))
    with pytest.raises(ConfigError) as error:
        load_catalog(path)
    message = str(error.value)
    assert named in message and str(path) in message and "\n" not in message


def test_policy_errors_name_unknown_regions_and_kinds(tmp_path):
    catalog = load_catalog()
    path = tmp_path / "policy.yaml"
    path.write_text("jobs: {default: {kinds: [cpu]}}\naccelerators: {allowed: {ae-dubay: [cpu]}}\n")
    with pytest.raises(ConfigError, match="unknown region 'ae-dubay'"):
        load_policy(path, catalog)
    path.write_text("jobs: {default: {kinds: [tpu]}}\n")
    with pytest.raises(ConfigError, match=r"jobs.default.kinds: unknown pool kind 'tpu'"):
        load_policy(path, catalog)
    path.write_text("jobs: {default: {kinds: [cpu], hours: -1}}\n")
    with pytest.raises(ConfigError, match="jobs.default.hours"):
        load_policy(path, catalog)
    path.write_text("jobs: {train: {kinds: [cpu]}}\n")
    with pytest.raises(ConfigError, match="add a 'default' entry"):
        load_policy(path, catalog)
    with pytest.raises(UserError, match="unknown region 'atlantis'; known regions: home, sa-brazil"):
        catalog.region("atlantis")
