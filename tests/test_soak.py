"""Long runs stay flat (issue 14): a busy Linux guest for an hour keeps pyemu's RSS within 10 % of its
value after boot, and the guest stays healthy (no kernel warning, oops or panic).

Slow (an hour by default; `PYEMU_SOAK_MINUTES` shortens it) and skipped without Debian's i386 kernel
and busybox. The workload and the sampling are benchmarks/soak.py's; run that script for the chart.
"""

from __future__ import annotations

import glob
import os

import pytest

from tests.initramfs import i386_busybox

pytestmark = [pytest.mark.slow, pytest.mark.images]

KERNELS = sorted(glob.glob("/boot/vmlinuz-*-686*"))


@pytest.mark.skipif(not KERNELS or i386_busybox() is None,
                    reason="needs Debian's linux-image-*-686 and busybox-static for i386")
def test_an_hour_of_a_busy_linux_guest_keeps_rss_flat():
    from benchmarks.soak import LIMIT, soak

    minutes = float(os.environ.get("PYEMU_SOAK_MINUTES", "60"))
    r = soak(minutes, interval=15.0, kernel=KERNELS[-1])
    assert r["problems"] == []
    assert r["rounds"] >= minutes  # the guest kept working: a round takes seconds, not minutes
    assert r["peak_kb"] <= LIMIT * r["baseline_kb"], r["samples"]
