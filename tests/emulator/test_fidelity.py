"""What the emulator models of Google's service beyond the happy path: 429 details,
the enqueued-token quota, PROCESSING uploads, keyless and dense results, odd states,
and the fast result builder (identical to the reference features and token counts)."""

from __future__ import annotations

import json
import random
import re
import string

import numpy as np
import pytest

from asemantic.testing.emulator import Fault, GeminiEmulator, OddState
from asemantic.testing.emulator.cli import build_parser, emulator_from_args
from asemantic.testing.emulator.embedding import analyse, analyse_many, fast_tokens, features
from asemantic.testing.lexical import lexical_features

from .conftest import MODEL, create_inline_batch, raw

QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"


def _texts() -> list[str]:
    rng = random.Random(3)
    alphabet = "ab cd\u00e9!?\n\t12\u65e5  zz_-.AZ\x0b\x01"
    made = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 90))) for _ in range(600)]
    words = [
        "refund",
        "refunds",
        "refunding",
        "invoice",
        "the",
        "a",
        "of",
        "meeting",
        "meetings",
        "42",
        "x",
        "cases",
        "bases",
        "needed",
        "going",
        "things",
        "sing",
        "yes",
        "ss",
        "Testing",
        "ABCes",
    ]
    made += [" ".join(rng.choices(words, k=rng.randint(1, 60))) for _ in range(600)]
    return [*made, "", "Title\nbody", "caf\u00e9 na\u00efve", "x" * 77]


@pytest.mark.parametrize("dims", [128, 768, 3072])
def test_the_fast_builder_equals_the_reference(dims: int) -> None:
    texts = _texts()
    matrix, tokens = analyse_many(texts, dims)
    for row, text in enumerate(texts):
        reference = lexical_features(text, dims)
        assert np.array_equal(matrix[row], reference), text
        assert np.array_equal(features(text, dims), reference), text
        vector, count = analyse(text, dims)
        assert np.array_equal(vector, reference), text
        assert tokens[row] == count == fast_tokens(text) == _reference_tokens(text), text


def _reference_tokens(text: str) -> int:
    """The emulator's token rule, one piece at a time: an ASCII word costs a token per
    4 letters, an ASCII symbol one, a non-ASCII character that is not white space one
    (the rule ``approximate_tokens`` had; the domain's estimate has since been refined)."""
    words = re.findall(r"[A-Za-z0-9]+", text)
    symbols = sum(1 for char in text if char in string.punctuation)
    wide = sum(1 for char in text if char > "\x7f" and not char.isspace())
    return sum((len(word) + 3) // 4 for word in words) + symbols + wide


def test_an_injected_429_has_googles_details() -> None:
    emulator = GeminiEmulator()
    emulator.faults.add(Fault(endpoint="batches.list", status=429, retry_delay=17))
    answer = raw(emulator, "GET", "/v1beta/batches")
    error = answer.json()["error"]
    assert (error["code"], error["status"]) == (429, "RESOURCE_EXHAUSTED")
    types = [detail["@type"] for detail in error["details"]]
    assert types == [QUOTA_FAILURE, "type.googleapis.com/google.rpc.Help", RETRY_INFO]
    assert error["details"][2]["retryDelay"] == "17s"
    assert "token" not in json.dumps(error["details"][0]).lower()  # a request-rate quota
    assert answer.header("retry-after") is None  # Google sends none


def test_the_enqueued_token_quota_refuses_with_quota_failure() -> None:
    emulator = GeminiEmulator(enqueued_token_limit=10, quota_retry_delay=30)
    create_inline_batch(emulator, ["alpha beta gamma"], display_name="first")
    requests = [{"request": {"content": {"parts": [{"text": "delta " * 12}]}}}]
    body = {"batch": {"displayName": "second", "inputConfig": {"requests": {"requests": requests}}}}
    answer = raw(emulator, "POST", f"/v1beta/models/{MODEL}:asyncBatchEmbedContent", body)
    assert answer.status == 429
    error = answer.json()["error"]
    (violation,) = error["details"][0]["violations"]
    assert violation["quotaMetric"].endswith("batch_enqueued_tokens")
    assert violation["quotaValue"] == "10"
    assert {"@type": RETRY_INFO, "retryDelay": "30s"} in error["details"]
    assert [b.display_name for b in emulator.batches] == ["first"]


def test_dense_vectors_are_google_sized_and_rank_alike() -> None:
    sparse, dense = GeminiEmulator(), GeminiEmulator(dense_vectors=True)
    text = "the refund policy for invoices paid late " * 10
    values = dense.embed(text, dimensions=768)
    assert all(value != 0.0 for value in values)
    line = json.dumps({"key": "k", "response": {"embedding": {"values": values}}})
    assert 8_000 <= len(line) <= 12_000
    a, b = np.array(values), np.array(sparse.embed(text, dimensions=768))
    assert float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) > 0.95


def test_an_odd_state_shows_in_the_raw_operation() -> None:
    emulator = GeminiEmulator()
    emulator.faults.add(OddState(state=None, done=True))
    operation = create_inline_batch(emulator, ["x y"], display_name="odd")
    emulator.complete_all()
    seen = raw(emulator, "GET", f"/v1beta/{operation['name']}").json()
    assert seen["done"] is True and "state" not in seen["metadata"]
    assert seen["error"]["code"] == 13
    assert "response" not in seen


def test_the_cli_builds_every_fidelity_option() -> None:
    args = build_parser().parse_args(
        [
            "--file-processing-seconds", "3",
            "--enqueued-token-limit", "500000",
            "--quota-retry-delay", "9",
            "--keyless-results",
            "--dense-vectors",
            "--transfer-rate", "1000000",
            "--unknown-state", "BATCH_STATE_PARTIALLY_SUCCEEDED",
            "--stateless-done",
        ]
    )  # fmt: skip
    config = emulator_from_args(args)._config
    assert config.file_processing_seconds == 3.0
    assert (config.enqueued_token_limit, config.quota_retry_delay) == (500_000, 9.0)
    assert config.keyless_results and config.dense_vectors and config.stateless_done
    assert config.transfer_rate == 1_000_000.0
    assert config.unknown_state == "BATCH_STATE_PARTIALLY_SUCCEEDED"


@pytest.mark.parametrize("keyed", [True, False])
def test_the_block_renderer_writes_the_general_paths_bytes(keyed: bool) -> None:
    from asemantic.testing.emulator.jobs import _dumps, _embed_all, _file_line, render_lines
    from asemantic.testing.emulator.state import InputItem

    texts = _texts()
    items = []
    for index, text in enumerate(texts):
        request: dict[str, object] = {"content": {"parts": [{"text": text}]}}
        if index % 3 == 0:
            request["outputDimensionality"] = 768
        if index % 5 == 0:
            request["taskType"] = "RETRIEVAL_DOCUMENT"
            request["title"] = f"Titel {index} \u00fcber"
        if index % 7 == 0:
            request["title"] = "a query title"
        if index % 97 == 0:
            request["outputDimensionality"] = 5  # refused: out of range
        if index % 211 == 0:
            request["content"] = {"parts": [{"text": "word " * 3000}]}  # over the limit
        items.append(
            InputItem(index=index, key=f"k{index}", request=request, has_key=index % 11 != 0)
        )
    lines, failed = render_lines(items, f"models/{MODEL}", keyed)
    general = _embed_all(items, f"models/{MODEL}", False)
    assert lines == [_dumps(_file_line(result, keyed)) for result in general]
    assert failed == sum(1 for result in general if result.error is not None) > 0
