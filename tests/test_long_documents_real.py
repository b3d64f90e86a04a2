"""Long documents with the real all-MiniLM-L6-v2 (256-token context) on real text: chunks that fit, late chunking
equal to the plain vector for a one-chunk document, and LongEmbed's passkey task at 1,024 tokens, where truncation
loses the pass key of most documents and chunk vectors find it."""

from __future__ import annotations

import numpy as np
import pytest

from gpte import Embedder
from gpte.data.long_context import passkey_task, write_retrieval_task
from gpte.data.mteb_folders import read_beir
from gpte.evaluate.runner import evaluate
from gpte.evaluate.tasks import load_task
from gpte.models.chunked import ChunkedEncoder
from gpte.models.chunking import ChunkSpan, chunk_spans
from gpte.models.late_chunking import encode_late_chunks

pytestmark = pytest.mark.real
# nDCG@1 (top-1 accuracy) of 10 queries over 20 passkey documents of 1,024 tokens: the key lies beyond the first 256
# tokens in most of them, so truncation finds 3; chunk vectors (best chunk) 9; late chunking 8


@pytest.fixture(scope="module")
def minilm() -> Embedder:
    return Embedder.load(device="cpu")


def test_minilm_chunks_of_cranfield_fit_and_late_chunking_of_one_chunk_is_the_plain_vector(minilm, shared_data):
    corpus = list(read_beir(shared_data / "retrieval" / "cranfield", "test").corpus.values())
    long_text = "\n\n".join(corpus[:12])
    budget = minilm.text_token_budget(role="document")
    spans = chunk_spans(long_text, minilm, budget, 32, "sentence")
    chunks = [long_text[s.start : s.end] for s in spans]
    assert len(spans) >= 5 and max(minilm.count_tokens(chunks)) <= budget == 254
    assert minilm.encode_with_report(chunks).report.n_truncated == 0
    short = [text for text in corpus[:40] if minilm.count_tokens([text])[0] <= budget][:8]
    late = encode_late_chunks(minilm, short, [[ChunkSpan(0, len(text))] for text in short])
    np.testing.assert_allclose(np.stack([v[0] for v in late]), minilm.encode(short), atol=1e-5, rtol=0)
    windowed = encode_late_chunks(minilm, [long_text], [spans])[0]  # ~12 documents: overlapping 256-token windows
    assert windowed.shape == (len(spans), 384) and np.allclose(np.linalg.norm(windowed, axis=1), 1.0, atol=1e-5)


def test_passkey_at_1024_tokens_truncation_misses_and_chunks_find_the_key(minilm, tmp_path):
    data = passkey_task(1024, minilm.count_tokens, n_documents=20, n_queries=10, seed=0)
    write_retrieval_task(tmp_path / "passkey", data, "test_1024", {"main_score": "ndcg_at_1"})
    task = load_task(tmp_path / "passkey", "passkey/test_1024")
    scores = {
        name: evaluate(model, [task]).results["passkey/test_1024"]["main_score_value"]
        for name, model in {
            "truncated": minilm,
            "chunks": ChunkedEncoder(minilm),
            "late": ChunkedEncoder(minilm, late=True),
        }.items()
    }
    assert scores == pytest.approx({"truncated": 0.3, "chunks": 0.9, "late": 0.8}, abs=1e-6)  # measured, CPU fp32
