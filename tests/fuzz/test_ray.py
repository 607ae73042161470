"""`pyemu fuzz --ray ADDRESS`: the campaign and the image matrix as Ray tasks (Ray is the optional
`cluster` extra; skipped where it is not installed). `local` starts a Ray instance on this machine."""

from __future__ import annotations

import pytest

from emu.fuzz import campaign as C
from emu.fuzz import matrix as M
from tests.fuzz.test_matrix import SPEC

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    yield "local"
    ray.shutdown()


def test_a_campaign_runs_as_ray_tasks_with_the_same_results_as_local_workers(local_ray):
    """Batches are Ray tasks; the programs and their findings do not depend on where they ran."""
    on_ray = C.campaign(300, seed=11, modes=("all",), budget=2000, ray_address=local_ray, log=print)
    here = C.campaign(300, seed=11, workers=0, modes=("all",), budget=2000, log=print)
    assert on_ray["programs"] == here["programs"] == 300 and on_ray["ray"] == "local"
    assert on_ray["finding_kinds"] == here["finding_kinds"]
    assert on_ray["with_compiled_second_run"] == here["with_compiled_second_run"]


def test_the_image_matrix_runs_as_ray_tasks(local_ray):
    jobs = [j for j in M.expand(M.load_spec(SPEC)) if j["name"].split("/")[0] in ("demo", "crc32")]
    s = M.run_matrix(jobs, ray_address=local_ray)
    assert s["fail"] == 0 and s["pass"] >= 8, s["results"]
