"""A Ray node that cannot see the lake fails the build before any model runs, naming the node
and the path (``make test-ray``). The node is real: a worker joining the cluster from a mount
namespace in which an empty tmpfs covers the lake's folder, as a node without the shared
filesystem mounted would be.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ray_fixtures import NO_RAY, RAY_INSTALLED, can_unshare, hidden_lake_node, lake_state, ray_cluster, wait_for_nodes
from warehouse import models
from warehouse.demo import write_demo
from warehouse.errors import ModelError

if not RAY_INSTALLED:
    pytest.skip(NO_RAY, allow_module_level=True)
pytestmark = pytest.mark.ray


def test_a_node_without_the_lake_fails_the_build_naming_node_and_path(tmp_path: Path) -> None:
    if not can_unshare():
        pytest.skip("this machine does not allow a mount namespace (unshare -m, mount): no node can hide the lake")
    lake = tmp_path / "shared" / "lake"
    write_demo(lake=lake, seed=0)
    before = lake_state(lake)
    with ray_cluster(cpus=1) as address, hidden_lake_node(address, lake.parent):
        wait_for_nodes(address, 2)
        with pytest.raises(ModelError) as failed:
            models.run(lake=lake, report=lambda line: None, executor="ray", address=address)
    message = str(failed.value)
    assert message.startswith("Ray node ") and f"cannot use the lake at {lake}: the path does not exist here" in message
    assert "every node must mount the lake at the same path" in message
    # before any model ran: no record, no output, no lock or staging left
    assert lake_state(lake) == before
