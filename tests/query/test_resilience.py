"""Rate limits and faults against the simulated provider: asserted from what the server saw, not from time.

Wall-clock numbers for the same scenarios are measured by `bench/rate_limits.py` (BENCHMARKS.md).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mini import AgenticRAG, EmbeddingModel, LLMConfig, VectorStore
from mini._limits import endpoint_key, limiter_for
from mini.errors import AuthenticationError
from mini.testing.sim import max_in_window
from tests.conftest import SAMPLE_CORPUS
from tests.query.conftest import SIM_KEY as KEY


async def test_a_provider_capped_at_16_answers_all_64_with_one_wave_of_refusals(
    rag: AgenticRAG, sim: Any
) -> None:
    sim.configure(chat_ms=200, embed_ms=20, max_in_flight=16, retry_after=0.5)
    questions = [f"How much is the 2025 library budget? ({i})" for i in range(64)]
    responses = await asyncio.gather(*(rag.query_async(q) for q in questions))
    assert all(r.metadata["answer_type"] == "llm" and r.citations for r in responses)
    assert all(r.metadata.get("rewrite") == "ok" for r in responses)  # no rewrite gave up

    stats, arrivals = sim.stats()["total"], sim.arrivals()
    # The first wave (64 rewrites at once) meets the cap; after it the limiter has learnt 16.
    assert stats["rate_limited"] <= 50, stats
    assert stats["peak_in_flight"] == 16
    first_refusal = min(t for t, _, status, _ in arrivals if status == 429)
    late = [t for t, _, status, _ in arrivals if status == 429 and t > first_refusal + 0.3]
    assert len(late) <= 2, late
    # Retries come back spread by jitter, not in lockstep.
    retried = [t for t, _, _, retry in arrivals if retry > 0]
    assert retried and max_in_window(retried, 0.05) <= 16
    limiter = limiter_for(endpoint_key(sim.base_url, KEY), max_in_flight=64)
    assert limiter.cap == 16


async def test_random_429s_and_5xx_are_survived_by_200_queries(sim: Any, tmp_path: Path) -> None:
    # The simulator draws its faults in arrival order, which concurrency changes from run to run. With 12% of
    # requests failing, a call exhausts the default 3 retries with probability 0.12**4 = 2e-4: about once in
    # eight runs of these ~600 calls (seen in CI-like runs). With 8 retries it is 5e-9 a call, so the test
    # proves that faults are survived without depending on the draw.
    rag = AgenticRAG(
        VectorStore(str(tmp_path), collection_name="sim"),
        EmbeddingModel("openai:sim-embed", base_url=sim.base_url, api_key=KEY, dimension=384, max_retries=8),
        llm_config=LLMConfig(model="sim-chat", base_url=sim.base_url, api_key=KEY, max_retries=8),
    )
    assert (await rag.index_documents_async([SAMPLE_CORPUS])).ok
    sim.reset()
    sim.configure(chat_ms=5, rate_limit_fraction=0.10, error_fraction=0.02, retry_after=0.05, seed=3)
    questions = [f"When is glass collected for recycling? ({i})" for i in range(200)]
    responses = await asyncio.gather(*(rag.query_async(q) for q in questions))
    assert len(responses) == 200
    assert all(r.metadata["answer_type"] == "llm" and r.answer for r in responses)
    stats = sim.stats()["total"]
    assert stats["rate_limited"] > 20 and stats["errors"] > 0, stats  # the faults really happened
    assert stats["retried"] >= stats["rate_limited"] + stats["errors"] - 5  # and were retried


async def test_wrong_key_fails_once_fast_without_retries(sim: Any, rag: AgenticRAG) -> None:
    sim.configure(api_key="the-right-key")
    with pytest.raises(AuthenticationError) as info:
        await rag.query_async("How much is the 2025 library budget?")
    assert sim.stats()["total"]["requests"] == 1  # one attempt: no retry, no backoff wait
    assert "sim-chat" in str(info.value) and info.value.request_id


async def test_concurrent_query_embeddings_share_a_few_requests_and_get_their_own_vectors(sim: Any) -> None:
    sim.configure(embed_ms=20)
    model = EmbeddingModel("openai:sim-embed", base_url=sim.base_url, api_key=KEY, dimension=384)
    texts = [f"question q{i} about topic t{i % 7}" for i in range(64)]
    together = await asyncio.gather(*(model.embed_query_async(t) for t in texts))
    assert sim.stats()["embeddings"]["requests"] <= 4
    alone_model = EmbeddingModel(
        "openai:sim-embed", base_url=sim.base_url, api_key=KEY, dimension=384, batch_window_ms=0
    )
    for text, vector in zip(texts, together, strict=True):
        alone = await alone_model.embed_query_async(text)
        assert np.allclose(vector, alone, atol=1e-6)
    assert len({tuple(np.round(v, 5)) for v in together}) == 64
    await model.aclose()
    await alone_model.aclose()


async def test_local_model_micro_batches_too(tmp_path: Path) -> None:
    model = EmbeddingModel()
    texts = [f"glass collection day {i}" for i in range(16)]
    together = await asyncio.gather(*(model.embed_query_async(t) for t in texts))
    assert model._coalescer.batches == 1 and model._coalescer.items == 16
    singles = [await EmbeddingModel(batch_window_ms=0).embed_query_async(t) for t in texts[:3]]
    for a, b in zip(together, singles, strict=False):
        assert np.allclose(a, b, atol=1e-5)


async def test_one_bad_text_in_a_shared_batch_fails_only_its_caller(sim: Any) -> None:
    model = EmbeddingModel("openai:sim-embed", base_url=sim.base_url, api_key=KEY, dimension=384)

    class Picky:
        name, dimension = "picky", 384

        async def embed(self, texts: list[str], *, input_type: str = "document") -> Any:
            if any("poison" in t for t in texts):
                from mini.errors import BadRequestError

                raise BadRequestError("input rejected", status_code=400)
            return await model.embedder.embed(texts, input_type=input_type)  # type: ignore[arg-type]

        async def aclose(self) -> None:
            pass

    picky = EmbeddingModel(embedder=Picky())  # type: ignore[arg-type]
    results = await asyncio.gather(
        *(picky.embed_query_async(t) for t in ["fine one", "poison pill", "fine two"]), return_exceptions=True
    )
    kinds = Counter(type(r).__name__ for r in results)
    assert kinds == {"list": 2, "BadRequestError": 1}
    assert isinstance(results[1], Exception)
    await model.aclose()
