"""Past ``deadline=``, pending chunks are embedded online within a cost budget.

Against the emulator through the real google-genai SDK (online and batch routes).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from asemantic import JobStatus, SemanticCore
from asemantic.batch.supervisor import BatchSupervisor
from asemantic.domain.tokens import approximate_tokens
from asemantic.errors import InvalidInputError
from asemantic.testing.emulator import GeminiEmulator
from tests.supervisor.conftest import BATCH_KEY, DEFAULT_KEY, OpenCore, fast, ingest
from tests.supervisor.test_token_quota import _all_chunks


def past() -> datetime:
    return datetime.now(UTC) - timedelta(seconds=1)


async def test_past_the_deadline_pending_chunks_are_embedded_online(
    open_core: OpenCore, emulator: GeminiEmulator
) -> None:
    core = await open_core()
    await ingest(core, 5)
    supervisor = BatchSupervisor(core, fast(deadline=past(), deadline_budget_usd=1.0))
    await supervisor.run_once()  # flush: a batch job; then the fallback embeds online
    counts = await core.store.count_chunks_by_status()
    assert counts["READY"] == 5 and counts["PENDING"] == 0
    online = emulator.requests_to("models.batchEmbedContents")
    assert online and {r.key_fingerprint for r in online} == {emulator.key_fingerprint(DEFAULT_KEY)}
    [job] = await core.batch_jobs.jobs()
    assert job.status is JobStatus.FAILED  # its chunks were embedded another way
    assert [r.status for r in emulator.requests_to("batches.cancel")] == [200]
    assert emulator.requests_to("batches.create")[0].key_fingerprint == (
        emulator.key_fingerprint(BATCH_KEY)
    )
    await supervisor.run_once()  # clean-up
    assert not emulator.remote_leftovers()

    spend = supervisor.health.online_fallback
    assert spend is not None and spend.texts == 5 and not spend.budget_spent
    stats = await core.stats()
    assert stats.cost.tokens_online == spend.tokens > 0
    assert stats.cost.tokens_batch == 0  # the route that paid: online only
    assert abs(stats.cost.cost_online_usd - spend.usd) < 1e-12
    hits = await core.search("invoice word0x1")
    assert hits


async def test_the_budget_caps_the_online_spend_and_batch_does_the_rest(
    open_core: OpenCore, emulator: GeminiEmulator
) -> None:
    core = await open_core()
    await ingest(core, 5)
    texts = [c.text for c in await _all_chunks(core)]
    pricing = core.pricing
    by_id = [approximate_tokens(t) for t in texts]  # chunks are embedded in id order
    two = by_id[0] + by_id[1]
    budget = pricing.online(two) + pricing.online(1) / 2  # two chunks, not a third
    supervisor = BatchSupervisor(core, fast(deadline=past(), deadline_budget_usd=budget))
    await supervisor.run_once()
    counts = await core.store.count_chunks_by_status()
    assert counts["READY"] == 2 and counts["PENDING"] == 3
    spend = supervisor.health.online_fallback
    assert spend is not None and spend.texts == 2 and spend.budget_spent
    assert spend.usd <= budget

    emulator.complete_all()
    await supervisor.run_once()
    await supervisor.run_once()
    counts = await core.store.count_chunks_by_status()
    assert counts["READY"] == 5 and counts["PENDING"] == 0
    stats = await core.stats()
    assert stats.cost.tokens_online == two
    assert stats.cost.tokens_batch > 0  # the batch route paid for the rest
    assert not emulator.remote_leftovers()


async def test_before_the_deadline_nothing_goes_online(
    open_core: OpenCore, emulator: GeminiEmulator
) -> None:
    core = await open_core()
    await ingest(core, 3)
    later = datetime.now(UTC) + timedelta(hours=1)
    supervisor = BatchSupervisor(core, fast(deadline=later))
    await supervisor.run_once()
    assert emulator.requests_to("models.batchEmbedContents") == ()
    assert (await core.store.count_chunks_by_status())["PENDING"] == 3
    assert supervisor.health.online_fallback is not None
    assert supervisor.health.online_fallback.texts == 0


async def test_a_deadline_needs_an_aware_time_and_a_core(open_core: OpenCore) -> None:
    core: SemanticCore = await open_core()
    with pytest.raises(InvalidInputError, match="aware"):
        fast(deadline=datetime(2030, 1, 1))  # naive on purpose
    with pytest.raises(InvalidInputError, match="SemanticCore"):
        BatchSupervisor(core.batch_manager, fast(deadline=past()))
