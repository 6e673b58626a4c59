"""Failed ticks: how a batch supervisor judges a failure and how long it pauses after it.

A :class:`TickFailures` belongs to one :class:`~asemantic.batch.supervisor.BatchSupervisor`
and keeps the failure side of its :attr:`~asemantic.batch.supervisor.BatchSupervisor.health`
(``failures``, ``backoff``, ``paused_reason``, ``last_error``): after a failed tick,
:meth:`TickFailures.record` judges the error, logs it, and chooses the pause before the
next tick; after a good one, :meth:`TickFailures.reset` clears the streak.

Decisions:

* **Failures back off.** A failed tick is retried after ``pause_initial``, doubling
  up to ``pause_max`` (never sooner than ``poll_interval``), all jittered. A failure
  that retrying will not cure on its own (a rejected key, a full disk, a request the
  provider refuses, any unexpected error) also sets ``health.paused_reason``;
  transient provider trouble (429, 5xx, timeouts) only backs off. What is transient,
  the backoff and the scrubbing are :mod:`asemantic.domain.policy`'s.
* **A failure is judged by its root cause**: the first error of an exception group,
  an authentication error first if there is one.
* **A database closed under a running supervisor is not paused on**: nothing can cure
  that, so :meth:`TickFailures.record` sets the supervisor's stop event instead.
* Messages about failures are built from asemantic's own (scrubbed) error texts and
  scrubbed once more of the keyring's keys before they are logged or shown.

Its records are logged under ``asemantic.batch.supervisor``, the logger they had before
failure handling got its own module.
"""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING

import anyio

from asemantic.batch.supervisor_config import SupervisorConfig
from asemantic.domain.policy import backoff_delay, is_transient, jittered_delay, scrub
from asemantic.errors import AuthenticationError, StoreClosedError

if TYPE_CHECKING:
    from asemantic.keys import GoogleKeyring

__all__ = ["TickFailures"]

logger = logging.getLogger("asemantic.batch.supervisor")

_MAX_MESSAGE = 500


def _root_cause(exc: Exception) -> Exception:
    """The exception to judge a failed tick by (an authentication error wins in a group)."""
    while isinstance(exc, ExceptionGroup):
        chosen = exc.subgroup(AuthenticationError) or exc
        first = chosen.exceptions[0]
        if not isinstance(first, Exception):
            break
        exc = first
    return exc


class TickFailures:
    """The failed ticks of one supervisor, paced by ``config`` and jittered by ``rng``.

    ``keys`` are scrubbed from every message. The attributes are what the supervisor's
    health shows: ``count`` consecutive failures, the ``backoff`` chosen after the
    latest, the ``paused_reason`` of a persistent failure, and the ``last_error`` of any
    kind (the supervisor also sets it when it loses its lease).
    """

    def __init__(self, config: SupervisorConfig, keys: GoogleKeyring, rng: random.Random) -> None:
        self._config = config
        self._secrets = (keys.default, keys.batch if keys.has_batch_key else None)
        self._rng = rng
        self.count = 0
        self.backoff: float | None = None
        self.paused_reason: str | None = None
        self.last_error: str | None = None

    def reset(self) -> None:
        """A tick went well: no streak, no backoff, no pause (``last_error`` stays)."""
        self.count = 0
        self.backoff = None
        self.paused_reason = None

    def record(self, exc: Exception, *, stop: anyio.Event) -> float:
        """Judge and log a failed tick; returns the delay before the next one.

        A database closed under the supervisor sets ``stop`` instead (delay 0).
        """
        cause = _root_cause(exc)
        if isinstance(cause, StoreClosedError):
            logger.error("the database was closed under the batch supervisor; stopping")
            self.last_error = "the database was closed while the supervisor ran; stopped"
            stop.set()
            return 0.0
        message = self._scrub(f"{type(cause).__name__}: {cause}")
        self.count += 1
        self.last_error = message
        extra = {"failures": self.count, "error": type(cause).__name__}
        if is_transient(cause):
            logger.warning("batch supervisor tick failed; backing off", extra=extra)
        else:
            first = self.paused_reason is None
            self.paused_reason = message
            if first:  # the traceback once; asemantic's error texts carry no key
                logger.error(
                    "batch supervisor paused by a persistent failure", exc_info=cause, extra=extra
                )
            else:
                logger.warning("batch supervisor still paused; backing off", extra=extra)
        base = backoff_delay(
            self.count, initial=self._config.pause_initial, cap=self._config.pause_max
        )
        delay = jittered_delay(
            max(self._config.poll_interval, base), self._config.jitter, self._rng
        )
        self.backoff = delay
        return delay

    def _scrub(self, text: str) -> str:
        return scrub(text, self._secrets)[:_MAX_MESSAGE]
