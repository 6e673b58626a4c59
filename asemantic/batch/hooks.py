"""Delivering job transition events to user hooks.

Hooks run in the order they were added, one after the other. A hook may be a plain or
an async callable. A hook that raises is logged and skipped: it never stops the other
hooks, nor the pipeline. Cancellation is never swallowed.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable

from asemantic.domain.events import TransitionEvent

__all__ = ["HookRegistry", "TransitionCallback"]

logger = logging.getLogger(__name__)

TransitionCallback = Callable[[TransitionEvent], Awaitable[None] | None]


class HookRegistry:
    """An ordered list of transition callbacks."""

    def __init__(self) -> None:
        self._hooks: list[TransitionCallback] = []

    def __len__(self) -> int:
        return len(self._hooks)

    def add(self, callback: TransitionCallback) -> TransitionCallback:
        """Register ``callback`` (returned, so this works as a decorator)."""
        if not callable(callback):
            raise TypeError("a transition hook must be callable")
        self._hooks.append(callback)
        return callback

    def remove(self, callback: TransitionCallback) -> None:
        self._hooks.remove(callback)

    async def emit(self, event: TransitionEvent) -> None:
        for hook in list(self._hooks):
            try:
                result = hook(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("transition hook failed; continuing with the next hook")
