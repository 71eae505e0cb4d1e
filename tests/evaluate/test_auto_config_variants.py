"""The held-out seed sweep's pieces: variants are checked before any run, and the report's differences of means
are against the defaults' runs of the same task."""

import pytest


@pytest.fixture(scope="module")
def sweep(benchmarks_importable):
    import auto_config_variants

    return auto_config_variants


def test_variant_fields_and_ranges_are_checked_before_any_run(sweep):
    assert sweep.parse_variant('{"num_minibatches": 4}') == {"num_minibatches": 4}
    with pytest.raises(SystemExit, match="num_minibatchs.*fields: .*num_minibatches"):
        sweep.parse_variant('{"num_minibatchs": 4}')
    with pytest.raises(SystemExit, match="update_epochs: Input should be greater than or equal to 1"):
        sweep.parse_variant('{"update_epochs": 0}')
    with pytest.raises(SystemExit, match="not JSON"):
        sweep.parse_variant("{x")
    with pytest.raises(SystemExit, match="expected a JSON object"):
        sweep.parse_variant("[4]")


def test_report_gives_each_variant_minus_the_defaults_of_its_task(sweep):
    runs = [{"task": "A", "seed": s, "variant": v, "return": r}
            for s, v, r in [(5, "{}", 10.0), (6, "{}", 20.0), (5, '{"x": 1}', 40.0), (6, '{"x": 1}', 30.0)]]
    runs += [{"task": "B", "seed": 5, "variant": "{}", "return": -3.0}]
    rows = sweep.report(runs, 100).splitlines()[2:]
    assert rows[0].startswith("| A | `{}` | 15 ± ") and rows[0].endswith("| 5: 10, 6: 20 |  |")
    assert rows[1].startswith('| A | `{"x": 1}` | 35 ± ') and rows[1].endswith("| 5: 40, 6: 30 | +20 |")
    assert rows[2] == "| B | `{}` | -3 | 5: -3 |  |"
    assert len(rows) == 3
