"""Mode choice, retry and transient classification, batch planning, flushing, backoff,
retry delays, scrubbing and the batch-key rule."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

import asemantic
from asemantic.config import GeminiSettings
from asemantic.domain.documents import EmbeddingStatus, IngestMode
from asemantic.domain.policy import (
    RETRYABLE_HTTP_STATUSES,
    ErrorClass,
    RetryConfig,
    RetryPolicy,
    backoff_delay,
    choose_mode,
    classify_line_error,
    full_jitter,
    is_retryable_status,
    is_transient,
    jittered_delay,
    next_chunk_status,
    parse_mode,
    plan_batches,
    refused_before_acting,
    require_batch_key,
    retry_info_delay,
    scrub,
    should_flush,
)
from asemantic.errors import (
    AuthenticationError,
    InvalidInputError,
    InvalidModeError,
    MissingBatchKeyError,
    ProviderError,
    ProviderRequestError,
    ProviderUnavailableError,
    RateLimitError,
    StoreClosedError,
)
from asemantic.keys import GoogleKeyring, Secret


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


@pytest.mark.parametrize(
    ("status", "retryable", "refused"),
    [
        (None, False, False),
        (200, False, False),
        (399, False, False),
        (400, False, True),
        (401, False, True),
        (403, False, True),
        (404, False, True),
        (408, True, False),  # a timeout: the provider may have acted
        (409, False, True),
        (429, True, True),  # refused now, worth trying later
        (499, False, True),
        (500, True, False),
        (501, False, False),
        (502, True, False),
        (503, True, False),
        (504, True, False),
        (505, False, False),
    ],
)
def test_status_rules(status: int | None, retryable: bool, refused: bool) -> None:
    assert is_retryable_status(status) is retryable
    assert refused_before_acting(status) is refused


def test_retryable_statuses_are_the_documented_set() -> None:
    assert frozenset({408, 429, 500, 502, 503, 504}) == RETRYABLE_HTTP_STATUSES
    for status in RETRYABLE_HTTP_STATUSES:  # a batch line follows the same rule
        assert classify_line_error(status, None) is ErrorClass.RETRYABLE


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ProviderError("odd answer"), True),
        (RateLimitError("429", status=429), True),
        (ProviderUnavailableError("503", status=503), True),
        (ProviderUnavailableError("timed out"), True),
        (AuthenticationError("bad key", status=401), False),
        (ProviderRequestError("bad request", status=400), False),
        (MissingBatchKeyError(), False),
        (StoreClosedError("closed"), False),
        (TimeoutError("not translated"), False),
        (ValueError("no"), False),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_is_transient(exc: BaseException, expected: bool) -> None:
    assert is_transient(exc) is expected


@pytest.mark.parametrize(
    ("attempt", "initial", "cap", "expected"),
    [
        (-3, 0.5, 300.0, 0.0),
        (0, 0.5, 300.0, 0.0),
        (1, 0.5, 300.0, 0.5),
        (2, 0.5, 300.0, 1.0),
        (3, 0.5, 300.0, 2.0),
        (10, 0.5, 300.0, 256.0),
        (11, 0.5, 300.0, 300.0),  # 512 is over the cap
        (10**6, 0.5, 300.0, 300.0),  # no overflow however long the streak
        (1, 5.0, 2.0, 2.0),  # the cap wins from the start
        (7, 0.0, 10.0, 0.0),
    ],
)
def test_backoff_delay(attempt: int, initial: float, cap: float, expected: float) -> None:
    assert backoff_delay(attempt, initial=initial, cap=cap) == expected


@given(ceiling=st.floats(0.0, 1e6), seed=st.integers())
def test_full_jitter_is_uniform_below_the_ceiling(ceiling: float, seed: int) -> None:
    delay = full_jitter(ceiling, random.Random(seed))
    assert 0.0 <= delay <= ceiling
    assert delay == random.Random(seed).uniform(0.0, ceiling)


def test_full_jitter_spreads_and_checks() -> None:
    rng = random.Random(5)
    delays = [full_jitter(10.0, rng) for _ in range(200)]
    assert min(delays) < 2.0 and max(delays) > 8.0
    assert full_jitter(0.0, rng) == 0.0
    with pytest.raises(InvalidInputError):
        full_jitter(-1.0, rng)


@pytest.mark.parametrize(
    ("interval", "jitter", "low", "high"),
    [(10.0, 0.0, 10.0, 10.0), (10.0, 0.2, 8.0, 12.0), (30.0, 0.5, 15.0, 45.0)],
)
def test_jittered_delay_stays_around_the_interval(
    interval: float, jitter: float, low: float, high: float
) -> None:
    rng = random.Random(11)
    delays = [jittered_delay(interval, jitter, rng) for _ in range(200)]
    assert all(low <= delay <= high for delay in delays)
    assert (max(delays) - min(delays) > (high - low) / 2) is (jitter > 0)


def _delay_before_the_move(
    config: RetryConfig, attempt: int, rng: random.Random, retry_after: float | None
) -> float:
    """RetryConfig.delay as adapters/gemini/retry.py computed it."""
    ceiling = min(config.max_delay, config.initial_delay * (2 ** (attempt - 1)))
    delay = rng.uniform(0, ceiling)
    if retry_after is not None:
        delay = max(delay, min(retry_after, config.max_delay))
    return delay


@pytest.mark.parametrize(
    "config",
    [
        RetryConfig(),
        RetryConfig(attempts=4, initial_delay=0.25, max_delay=10.0),
        RetryConfig(initial_delay=0.0, max_delay=0.05),
        RetryConfig(initial_delay=0.001, max_delay=0.01),
    ],
)
@pytest.mark.parametrize("retry_after", [None, 0.0, 0.3, 3.0, 1000.0])
def test_retry_delay_matches_the_old_results(
    config: RetryConfig, retry_after: float | None
) -> None:
    new, old = random.Random(42), random.Random(42)
    for attempt in range(1, 40):
        expected = _delay_before_the_move(config, attempt, old, retry_after)
        assert config.delay(attempt, new, retry_after) == expected


@pytest.mark.parametrize(
    ("attempt", "retry_after", "low", "high"),
    [
        (1, None, 0.0, 1.0),
        (3, None, 0.0, 4.0),
        (9, None, 0.0, 8.0),  # capped by max_delay
        (1, 5.0, 5.0, 5.0),  # Retry-After is a floor above the backoff
        (1, 100.0, 8.0, 8.0),  # ... capped by max_delay too
    ],
)
def test_retry_delay_bounds(
    attempt: int, retry_after: float | None, low: float, high: float
) -> None:
    config = RetryConfig(initial_delay=1.0, max_delay=8.0)
    rng = random.Random(1)
    for _ in range(50):
        assert low <= config.delay(attempt, rng, retry_after) <= high


@pytest.mark.parametrize(
    "values",
    [{"attempts": 0}, {"initial_delay": -1.0}, {"max_delay": -0.1}, {"timeout": 0.0}],
)
def test_retry_config_checks(values: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        RetryConfig(**values)  # type: ignore[arg-type]


def test_retry_config_is_one_class_everywhere() -> None:
    assert asemantic.RetryConfig is RetryConfig
    assert isinstance(GeminiSettings().retry, RetryConfig)


class _Revealing:
    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value


@pytest.mark.parametrize(
    ("text", "secrets", "expected"),
    [
        ("nothing to hide", [], "nothing to hide"),
        ("key=AIzaKEY1 again AIzaKEY1.", [Secret("AIzaKEY1")], "key=*** again ***."),
        (
            "a=AIzaKEY1 b=BATCHKEY2 a=AIzaKEY1",
            [Secret("AIzaKEY1"), "BATCHKEY2"],
            "a=*** b=*** a=***",
        ),
        ("online K-1, batch K-2", [None, _Revealing("K-1"), None, "K-2"], "online ***, batch ***"),
        ("abc", ["", _Revealing("")], "abc"),  # an empty secret would mangle the text
        ("abcdef and abc", ["abc", "abcdef"], "*** and ***"),  # the longer key first
        ("same key, twice listed", ["key", Secret("key")], "same ***, twice listed"),
    ],
)
def test_scrub(text: str, secrets: list[object], expected: str) -> None:
    assert scrub(text, secrets) == expected  # type: ignore[arg-type]


class _Holder:
    def __init__(self, has: bool) -> None:
        self.has_batch_key = has


@pytest.mark.parametrize(
    ("keys", "allowed"),
    [
        (None, False),
        (GoogleKeyring("online-key"), False),
        (GoogleKeyring("online-key", batch_key="batch-key"), True),
        (_Holder(False), False),
        (_Holder(True), True),
    ],
    ids=["none", "keyring-without", "keyring-with", "holder-without", "holder-with"],
)
def test_require_batch_key(keys: object, allowed: bool) -> None:
    if allowed:
        require_batch_key(keys)  # type: ignore[arg-type]
        return
    with pytest.raises(ValueError, match="Batch operations require a dedicated API key") as info:
        require_batch_key(keys)  # type: ignore[arg-type]
    assert isinstance(info.value, MissingBatchKeyError)


def test_keyring_batch_follows_the_rule() -> None:
    assert GoogleKeyring("online-key", batch_key="batch-key").batch == Secret("batch-key")
    with pytest.raises(MissingBatchKeyError):
        _ = GoogleKeyring("online-key").batch


_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"error": {"details": [{"@type": _RETRY_INFO, "retryDelay": "17s"}]}}, 17.0),
        ({"details": [{"@type": _RETRY_INFO, "retryDelay": "0.5s"}]}, 0.5),
        (
            {
                "error": {
                    "details": [
                        {"@type": "x.QuotaFailure"},
                        {"@type": _RETRY_INFO, "retryDelay": "3s"},
                    ]
                }
            },
            3.0,
        ),
        ({"error": {"details": [{"@type": _RETRY_INFO, "retryDelay": "17"}]}}, None),
        ({"error": {"details": [{"@type": _RETRY_INFO, "retryDelay": "-1s"}]}}, None),
        ({"error": {"details": [{"@type": _RETRY_INFO, "retryDelay": "nans"}]}}, None),
        ({"error": {"details": [{"@type": _RETRY_INFO, "retryDelay": "abcs"}]}}, None),
        ({"error": {"details": [{"@type": "x.Help", "retryDelay": "5s"}]}}, None),
        ({"error": {"code": 429}}, None),
        ("not json", None),
        (None, None),
    ],
)
def test_retry_info_delay(body: object, expected: float | None) -> None:
    assert retry_info_delay(body) == expected
