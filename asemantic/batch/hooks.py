"""Delivering job transition events to user hooks: one registry per batch manager.

Decisions:

* **One registry.** The manager owns it; ``core.batch_manager.on_transition`` adds a
  hook for as long as the manager lives, and a supervisor *attaches* its own hooks for
  as long as it runs (added when it starts, removed when it stops), so a new supervisor
  on the same core starts without the old one's hooks. There is no second registry.
* **One event at a time, in order.** Jobs are polled concurrently, but :meth:`emit`
  holds a lock while it runs the hooks: every hook has seen an event before any hook
  sees the next one. Hooks run in the order they were added. A hook therefore must not
  wait for another transition (a hook that runs a batch pass itself would wait forever).
* **Isolated.** A hook may be a plain or an async callable. One that raises is logged
  and skipped: it never stops the other hooks, nor the pipeline. Cancellation is never
  swallowed.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable

import anyio

from asemantic.domain.events import TransitionEvent

__all__ = ["HookRegistry", "TransitionCallback"]

logger = logging.getLogger(__name__)

TransitionCallback = Callable[[TransitionEvent], Awaitable[None] | None]
"""A hook: called with each :class:`TransitionEvent`; may return an awaitable."""


class HookRegistry:
    """An ordered list of transition callbacks, delivered one event at a time."""

    def __init__(self) -> None:
        self._hooks: list[TransitionCallback] = []
        self._lock = anyio.Lock()

    def __len__(self) -> int:
        return len(self._hooks)

    def add(self, callback: TransitionCallback) -> TransitionCallback:
        """Register ``callback`` (returned, so this works as a decorator)."""
        if not callable(callback):
            raise TypeError("a transition hook must be callable")
        self._hooks.append(callback)
        return callback

    def remove(self, callback: TransitionCallback) -> None:
        """Unregister ``callback`` (``ValueError`` if it is not registered)."""
        self._hooks.remove(callback)

    async def emit(self, event: TransitionEvent) -> None:
        """Run every hook on ``event``, in order, before any hook sees the next event."""
        if not self._hooks:
            return
        async with self._lock:
            for hook in list(self._hooks):
                try:
                    result = hook(event)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    logger.exception("transition hook failed; continuing with the next hook")
