"""Mode choice, retry classification, batch planning, flushing and backoff."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asemantic.domain.documents import EmbeddingStatus, IngestMode
from asemantic.domain.policy import (
    ErrorClass,
    RetryPolicy,
    choose_mode,
    classify_line_error,
    next_chunk_status,
    parse_mode,
    plan_batches,
    poll_delay,
    should_flush,
)
from asemantic.errors import InvalidInputError, InvalidModeError


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("sync", IngestMode.SYNC),
        (" ASYNC ", IngestMode.ASYNC),
        ("Auto", IngestMode.AUTO),
        (IngestMode.AUTO, IngestMode.AUTO),
    ],
)
def test_parse_mode(value: str, expected: IngestMode) -> None:
    assert parse_mode(value) is expected


@pytest.mark.parametrize("value", ["batch", "", "syncc", 1, None])
def test_parse_mode_lists_the_valid_modes(value: object) -> None:
    with pytest.raises(InvalidModeError, match="valid modes are 'sync', 'async', 'auto'"):
        parse_mode(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("requested", "key", "tokens", "chunks", "mode", "reason"),
    [
        (IngestMode.SYNC, True, 10**6, 9, IngestMode.SYNC, "sync was requested"),
        (IngestMode.ASYNC, False, 1, 1, IngestMode.ASYNC, "async was requested"),
        (IngestMode.AUTO, False, 10**6, 99, IngestMode.SYNC, "no batch key"),
        (IngestMode.AUTO, True, 19_999, 5, IngestMode.SYNC, "19,999 tokens to embed is below"),
        (IngestMode.AUTO, True, 20_000, 5, IngestMode.ASYNC, "reaches the 20,000-token"),
        (IngestMode.AUTO, True, 0, 0, IngestMode.SYNC, "nothing new to embed"),
    ],
)
def test_choose_mode(
    requested: IngestMode, key: bool, tokens: int, chunks: int, mode: IngestMode, reason: str
) -> None:
    chosen, why = choose_mode(requested, has_batch_key=key, tokens=tokens, chunks=chunks)
    assert chosen is mode
    assert reason in why


def test_choose_mode_threshold_and_checks() -> None:
    assert (
        choose_mode(
            IngestMode.AUTO, has_batch_key=True, tokens=5, chunks=1, auto_batch_min_tokens=5
        )[0]
        is IngestMode.ASYNC
    )
    assert choose_mode("auto", has_batch_key=True, tokens=5, chunks=1)[0] is IngestMode.SYNC  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        choose_mode(IngestMode.AUTO, has_batch_key=True, tokens=-1, chunks=1)


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        *[(code, None, ErrorClass.RETRYABLE) for code in (408, 429, 500, 502, 503, 504)],
        *[
            (None, name, ErrorClass.RETRYABLE)
            for name in ("UNAVAILABLE", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "internal")
        ],
        *[(code, None, ErrorClass.RETRYABLE) for code in (4, 8, 13, 14)],  # gRPC codes
        (400, "INVALID_ARGUMENT", ErrorClass.PERMANENT),
        (3, "INVALID_ARGUMENT", ErrorClass.PERMANENT),
        (403, "PERMISSION_DENIED", ErrorClass.PERMANENT),
        (404, None, ErrorClass.PERMANENT),
        (501, "UNIMPLEMENTED", ErrorClass.PERMANENT),
        (None, None, ErrorClass.PERMANENT),
        (400, "UNAVAILABLE", ErrorClass.RETRYABLE),  # either sign of a transient failure
    ],
)
def test_classify_line_error(code: int | None, status: str | None, expected: ErrorClass) -> None:
    assert classify_line_error(code, status) is expected


@pytest.mark.parametrize(
    ("attempts", "error", "expected"),
    [
        (1, ErrorClass.RETRYABLE, EmbeddingStatus.PENDING),
        (2, ErrorClass.RETRYABLE, EmbeddingStatus.PENDING),
        (3, ErrorClass.RETRYABLE, EmbeddingStatus.FAILED),
        (9, ErrorClass.RETRYABLE, EmbeddingStatus.FAILED),
        (1, ErrorClass.PERMANENT, EmbeddingStatus.FAILED),
    ],
)
def test_next_chunk_status(attempts: int, error: ErrorClass, expected: EmbeddingStatus) -> None:
    assert next_chunk_status(attempts, error, RetryPolicy()) is expected


def test_retry_policy_checks() -> None:
    assert (
        next_chunk_status(1, ErrorClass.RETRYABLE, RetryPolicy(max_attempts=1))
        is EmbeddingStatus.FAILED
    )
    with pytest.raises(InvalidInputError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(InvalidInputError):
        next_chunk_status(-1, ErrorClass.RETRYABLE, RetryPolicy())


@pytest.mark.parametrize(
    ("chunks", "max_size", "max_bytes", "expected"),
    [
        ([], 10, 100, []),
        ([(1, 10), (2, 10), (3, 10)], 2, 100, [[1, 2], [3]]),
        ([(1, 60), (2, 40), (3, 1)], 10, 100, [[1, 2], [3]]),
        ([(1, 10), (2, 500), (3, 10)], 10, 100, [[1], [2], [3]]),  # oversized goes alone
        ([(1, 500)], 10, 100, [[1]]),
        ([(5, 0), (4, 0), (3, 0)], 1, 1, [[5], [4], [3]]),
    ],
)
def test_plan_batches(
    chunks: list[tuple[int, int]], max_size: int, max_bytes: int, expected: list[list[int]]
) -> None:
    assert plan_batches(chunks, max_size=max_size, max_bytes=max_bytes) == expected


@given(
    chunks=st.lists(st.tuples(st.integers(), st.integers(0, 300)), max_size=200),
    max_size=st.integers(1, 30),
    max_bytes=st.integers(1, 1000),
)
def test_plan_batches_bounds(chunks: list[tuple[int, int]], max_size: int, max_bytes: int) -> None:
    groups = plan_batches(chunks, max_size=max_size, max_bytes=max_bytes)
    assert [cid for group in groups for cid in group] == [cid for cid, _ in chunks]
    sizes = iter(size for _, size in chunks)
    for group in groups:
        group_sizes = [next(sizes) for _ in group]
        assert 1 <= len(group) <= max_size
        assert sum(group_sizes) <= max_bytes or len(group) == 1


def test_plan_batches_checks() -> None:
    with pytest.raises(InvalidInputError):
        plan_batches([], max_size=0, max_bytes=1)
    with pytest.raises(InvalidInputError):
        plan_batches([(1, -1)], max_size=1, max_bytes=1)


@pytest.mark.parametrize(
    ("pending", "min_size", "force", "expected"),
    [
        (0, 10, True, False),
        (9, 10, False, False),
        (10, 10, False, True),
        (1, 10, True, True),
        (5, 0, False, True),
    ],
)
def test_should_flush(pending: int, min_size: int, force: bool, expected: bool) -> None:
    assert should_flush(pending, min_size=min_size, force=force) is expected


@given(
    base=st.floats(0.01, 100),
    attempt=st.integers(0, 5000),
    cap=st.floats(0.01, 1e6),
    seed=st.integers(),
)
def test_poll_delay_bounds(base: float, attempt: int, cap: float, seed: int) -> None:
    delay = poll_delay(base, attempt, rng=random.Random(seed), cap=cap)
    assert 0.0 <= delay <= min(cap, base * 2.0 ** min(attempt, 1000))


def test_poll_delay_is_deterministic_and_grows() -> None:
    first = [poll_delay(1.0, n, rng=random.Random(7), cap=60.0) for n in range(10)]
    again = [poll_delay(1.0, n, rng=random.Random(7), cap=60.0) for n in range(10)]
    assert first == again
    rng = random.Random(3)
    early = sum(poll_delay(1.0, 0, rng=rng, cap=60.0) for _ in range(500)) / 500
    late = sum(poll_delay(1.0, 8, rng=rng, cap=60.0) for _ in range(500)) / 500
    assert early < 1.0 < late <= 60.0


@pytest.mark.parametrize(("base", "attempt", "cap"), [(0.0, 1, 1.0), (1.0, -1, 1.0), (1.0, 1, 0.0)])
def test_poll_delay_checks(base: float, attempt: int, cap: float) -> None:
    with pytest.raises(InvalidInputError):
        poll_delay(base, attempt, rng=random.Random(0), cap=cap)
