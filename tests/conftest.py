"""Settings for the whole suite."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

from tests import otheruser

# CI (and `scripts/test`) use "ci": no per-example deadline — a loaded 2-core machine makes the
# default 200 ms deadline a flake — and the seed printed with every failure, to reproduce it.
settings.register_profile("ci", deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=1000)
# `scripts/test --fast`: the inner loop; fewer examples, every property still exercised.
settings.register_profile("fast", deadline=None, max_examples=20)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    otheruser.remove()
