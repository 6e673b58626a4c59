"""Helpers shared by several test suites."""

from __future__ import annotations

from typing import Any

from asemantic import SupervisorConfig

__all__ = ["fast_supervisor"]


def fast_supervisor(**overrides: Any) -> SupervisorConfig:
    """A supervisor config that ticks every few milliseconds (for tests)."""
    values: dict[str, Any] = {
        "poll_interval": 0.01,
        "jitter": 0.2,
        "min_batch_size": 1,
        "max_wait": 0.0,
        "lease_ttl": 5.0,
        "pause_initial": 0.02,
        "pause_max": 0.1,
        "stop_timeout": 2.0,
    }
    values.update(overrides)
    return SupervisorConfig(**values)
