"""`pyemu fuzz --ray ADDRESS` on a Ray cluster of two nodes (two raylets on this machine, as Ray's
own `cluster_utils` starts them): the batches spread over both nodes' workers, the summary names
the cluster's shape, and the results are those of local workers. Skipped where Ray is missing."""

from __future__ import annotations

import pytest

from emu.fuzz import campaign as C

ray = pytest.importorskip("ray")
cluster_utils = pytest.importorskip("ray.cluster_utils")


@pytest.fixture(scope="module")
def two_nodes():
    cluster = cluster_utils.Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster.address
    ray.shutdown()
    cluster.shutdown()


def test_a_campaign_spreads_over_a_two_node_cluster(two_nodes):
    on_ray = C.campaign(200, seed=13, modes=("all",), budget=2000, ray_address=two_nodes, batch=10, log=print)
    here = C.campaign(200, seed=13, workers=0, modes=("all",), budget=2000, batch=10, log=print)
    assert on_ray["ray_nodes"] == 2 and on_ray["ray_cpus"] == 2
    assert on_ray["ray_nodes_used"] == 2 and on_ray["worker_processes"] >= 2  # tasks ran on both nodes
    assert on_ray["programs"] == here["programs"] == 200
    assert on_ray["finding_kinds"] == here["finding_kinds"]
    assert on_ray["with_compiled_second_run"] == here["with_compiled_second_run"]
