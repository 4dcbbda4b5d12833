"""Fixtures of the in-process engine tests; a module gives its own ``paths`` (its config)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from detoxd.clock import FakeClock
from detoxd.paths import Paths
from detoxd.service.engine import Engine


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))


@pytest.fixture
def engine(paths: Paths, clock: FakeClock) -> Iterator[Engine]:
    """A booted Engine on the module's ``paths``; shut down (checkpointed) after the test."""
    engine = Engine(paths, clock)
    engine.boot()
    yield engine
    engine.shutdown()
