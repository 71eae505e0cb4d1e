"""The shared `ray_cluster` fixture: one head without CPUs and one labelled 1-CPU node per region."""

import ray

RAY_REGIONS = ("eu-france", "sa-brazil")  # as tests/conftest.py labels the nodes


def test_ray_cluster_has_one_alive_node_per_region(ray_cluster):
    alive = [node for node in ray.nodes() if node["Alive"]]
    regions = sorted(node["Labels"].get("region") for node in alive if node["Resources"].get("CPU"))
    assert regions == sorted(RAY_REGIONS)
    assert ray.cluster_resources()["CPU"] == len(RAY_REGIONS)


def test_a_task_with_a_region_selector_runs_on_that_region(ray_cluster):
    labels = {node["NodeID"]: node["Labels"] for node in ray.nodes()}

    @ray.remote(num_cpus=1)
    def where() -> str:
        return ray.get_runtime_context().get_node_id()

    for region in RAY_REGIONS:
        node_id = ray.get(where.options(label_selector={"region": region}).remote(), timeout=60)
        assert labels[node_id]["region"] == region
