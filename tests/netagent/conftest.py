"""The in-process daemon the network agent's tests sync with (tests/service's fixtures)."""

from tests.service.conftest import clock, engine

__all__ = ["clock", "engine"]
