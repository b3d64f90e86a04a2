"""Long documents: token-exact chunking (token and sentence boundaries), late chunking, chunk vectors as a
multi-vector view (``ChunkedEncoder``) through evaluation; on the tiny random models of every tokenizer family."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gpte.evaluate.runner import evaluate
from gpte.evaluate.tasks import load_task
from gpte.models.chunked import ChunkedEncoder
from gpte.models.chunking import ChunkSpan, chunk_spans
from gpte.models.embedder import Embedder
from gpte.models.late_chunking import _tokenized, _windowed_states, encode_late_chunks
from gpte.prompts import PromptSet

FAMILIES = ["bert", "roberta", "xlm-roberta", "mpnet", "llama", "qwen2", "mistral", "gpt2", "t5"]
TEXT = (
    "The wing was tested at high speed in the tunnel. Results agreed with theory!  A second series, "
    "at Mach 2.5, showed separation near the trailing edge. Why? The boundary layer thickened.\n\n"
    "Heat transfer rates (measured with thin-skin gauges) were low; naïve estimates were 30% high. "
) * 6


def _load(tiny_models, kind: str, **options) -> Embedder:
    return Embedder.load(tiny_models[kind], device="cpu", **options)


@pytest.mark.parametrize("kind", FAMILIES)
@pytest.mark.parametrize("boundary", ["token", "sentence"])
def test_chunks_fit_the_budget_cover_the_text_and_are_never_truncated(tiny_models, kind, boundary):
    model = _load(tiny_models, kind, pooling="mean", max_seq_length=40, prompts={"document": "passage: "})
    budget = model.text_token_budget(role="document")
    spans = chunk_spans(TEXT, model, budget, 6, boundary)
    texts = [TEXT[s.start : s.end] for s in spans]
    assert len(spans) > 3 and max(model.count_tokens(texts)) <= budget
    offsets = model.token_offsets(TEXT)
    assert spans[0].start == offsets[0][0] and spans[-1].end == offsets[-1][1]
    assert all(b.start <= a.end and b.start > a.start for a, b in zip(spans, spans[1:]))  # no gap, always forward
    assert model.encode_with_report(texts, role="document").report.n_truncated == 0


def test_sentence_boundaries_end_chunks_after_a_sentence_and_start_the_next_at_one(tiny_models):
    model = _load(tiny_models, "bert", pooling="mean")
    sentence = "the wing stalls early . "  # 5 tokens
    text = sentence * 12
    starts = {i * len(sentence) for i in range(12)}
    spans = chunk_spans(text, model, 12, 6, "sentence")  # a whole sentence fits in the overlap
    assert [model.count_tokens([text[s.start : s.end]])[0] for s in spans[:-1]] == [10] * (len(spans) - 1)
    assert all(s.start in starts and text[s.end - 1] == "." for s in spans)
    token_spans = chunk_spans(text, model, 12, 4, "token")
    assert token_spans[0].end != spans[0].end  # 12 tokens cut a sentence
    with pytest.raises(ValueError, match="unknown chunk boundary 'word'; choose one of: token, sentence"):
        chunk_spans(text, model, 12, 4, "word")


POOLINGS = [
    ("bert", "mean", None),
    ("bert", "weighted_mean", None),
    ("bert", "max", None),
    ("roberta", "mean_sqrt_len", None),
    ("t5", "mean", None),
    ("gpt2", "weighted_mean", None),
    ("llama", {"name": "mean", "include_prompt": False}, {"document": "Represent the document: "}),
    ("llama", {"name": "span_mean"}, {"document": "Rewrite: {text}. Rewritten: {text}"}),
    ("qwen2", {"name": "multi_layer", "layers": 2}, None),
    ("bert", {"name": "latent_attention", "latents": 4, "heads": 2}, None),
]


@pytest.mark.parametrize(("kind", "pooling", "prompts"), POOLINGS)
def test_late_chunking_of_a_one_chunk_document_is_its_plain_vector(tiny_models, kind, pooling, prompts):
    model = _load(tiny_models, kind, pooling=pooling, prompts=prompts)
    texts = ["The wing was tested. It flew well.", "Heat transfer at Mach 2.5 was low."]
    plain = model.encode(texts, role="document")
    late = encode_late_chunks(model, texts, [[ChunkSpan(0, len(t))] for t in texts], role="document")
    np.testing.assert_allclose(np.stack([v[0] for v in late]), plain, atol=1e-5, rtol=0)


def test_late_chunk_vectors_are_the_means_of_their_tokens_in_one_pass(tiny_models):
    model = _load(tiny_models, "bert", pooling="mean", normalize=False)
    text = "the wing stalls early . the flap moves down . the tail shakes hard ."
    spans = chunk_spans(text, model, 5, 0, "sentence")
    assert len(spans) == 3
    vectors = encode_late_chunks(model, [text], [spans])[0]
    batch = model.tokenizer.pad(model.tokenizer.tokenize([text]), [0])
    with torch.inference_mode():
        hidden = model.backbone(batch)[0][0]
    # [CLS] + 3 sentences of 5 tokens + [SEP]: CLS goes with the first chunk, SEP with the last
    expected = [hidden[0:6].mean(0), hidden[6:11].mean(0), hidden[11:17].mean(0)]
    np.testing.assert_allclose(vectors, torch.stack(expected).numpy(), atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", ["bert", "llama", "t5"])
def test_a_document_beyond_the_context_is_pieced_from_overlapping_windows(tiny_models, kind):
    model = _load(tiny_models, kind, pooling="mean", max_seq_length=24)
    text = "the wing stalls early and the flap moves down . " * 20
    doc = _tokenized(model, text, chunk_spans(text, model, 10, 2), None)
    labels = np.asarray(doc.segments)
    lead, trail = int(np.argmax(labels != -1)), int(np.argmax(labels[::-1] != -1))
    capacity, overlap = 24 - lead - trail, 6
    stride = capacity - overlap
    states = _windowed_states(model, doc, overlap, batch_size=3)
    body = doc.input_ids[lead : len(doc.input_ids) - trail]
    for window_start in (stride, 3 * stride):  # a body token past half the overlap comes from its window
        window = (
            doc.input_ids[:lead]
            + body[window_start : window_start + capacity]
            + doc.input_ids[-trail or len(doc.input_ids) :]
        )
        batch = model.tokenizer.pad(_as_tokenized(window), [0])
        with torch.inference_mode():
            own = model.backbone(batch)[0][0]
        j = window_start + overlap // 2 + 1
        torch.testing.assert_close(states.hidden[0, lead + j], own[lead + overlap // 2 + 1], atol=1e-5, rtol=0)
    assert states.hidden.shape[1] == len(doc.input_ids)
    vectors = encode_late_chunks(model, [text], [chunk_spans(text, model, 10, 2)], window_overlap=overlap)[0]
    assert np.isfinite(vectors).all() and len(vectors) == len(chunk_spans(text, model, 10, 2))


def _as_tokenized(ids):
    from gpte.models.tokenization import TokenizedTexts

    return TokenizedTexts([ids], [False])


def test_late_chunking_refuses_one_token_poolers_prompt_sets_and_bad_windows(tiny_models):
    for pooling in ("cls", "last"):
        model = _load(tiny_models, "bert", pooling=pooling)
        with pytest.raises(ValueError, match=f"{pooling} pooling reads one fixed token; use a pooling that reduces"):
            encode_late_chunks(model, ["a b"], [[ChunkSpan(0, 3)]])
        with pytest.raises(ValueError, match="late chunking pools each chunk's tokens"):
            ChunkedEncoder(model, 8, late=True)
    model = _load(tiny_models, "bert", pooling="mean", max_seq_length=16)
    with pytest.raises(ValueError, match="one prompt template, not a prompt set"):
        encode_late_chunks(model, ["a b"], [[ChunkSpan(0, 3)]], prompt=PromptSet.parse(["x: {text}", "y: {text}"]))
    with pytest.raises(ValueError, match=r"window_overlap must be a whole number in \[0, 14\)"):
        encode_late_chunks(model, ["wing " * 40], [[ChunkSpan(0, 200)]], window_overlap=14)
    with pytest.raises(ValueError, match="2 lists of chunk spans for 1 documents"):
        encode_late_chunks(model, ["a"], [[ChunkSpan(0, 1)], [ChunkSpan(0, 1)]])


def test_chunked_encoder_plain_late_and_context_vectors_and_scores(tiny_models):
    model = _load(tiny_models, "bert", pooling="mean", normalize=True)
    docs = ["the wing stalls early . the flap moves down . the tail shakes hard .", "heat flows fast ."]
    plain = ChunkedEncoder(model, chunk_tokens=5, overlap=0)
    vectors = plain.encode(docs, role="document")
    assert vectors.lengths.tolist() == [3, 1]
    chunks = [docs[0][s.start : s.end] for s in plain.spans(docs[0])] + [docs[1]]
    np.testing.assert_allclose(vectors.data, model.encode(chunks, role="document"), atol=1e-6, rtol=0)
    queries = plain.encode(["does the flap move ?", "heat"], role="query")
    assert queries.lengths.tolist() == [1, 1]
    chunk_scores = queries.data @ vectors.data.T  # normalized: cosine is the dot product
    np.testing.assert_allclose(
        plain.similarity(queries, vectors), [[chunk_scores[q, :3].max(), chunk_scores[q, 3]] for q in (0, 1)], atol=1e-6
    )
    mean = ChunkedEncoder(model, chunk_tokens=5, overlap=0, aggregate="mean")
    np.testing.assert_allclose(
        mean.similarity(queries, vectors), [[chunk_scores[q, :3].mean(), chunk_scores[q, 3]] for q in (0, 1)], atol=1e-6
    )
    np.testing.assert_allclose(plain.similarity_pairwise(queries, vectors), np.diag(plain.similarity(queries, vectors)))
    late = ChunkedEncoder(model, chunk_tokens=5, overlap=0, late=True)
    late_vectors = late.encode(docs)
    np.testing.assert_allclose(late_vectors[1], model.encode([docs[1]]), atol=1e-5, rtol=0)  # one chunk: plain
    assert not np.allclose(late_vectors[0], vectors[0], atol=1e-3)  # chunks of a longer document see its context
    context = ChunkedEncoder(model, chunk_tokens=5, overlap=0, context={docs[0]: "aero notes"})
    first = context.encode_chunks(docs)[0]
    np.testing.assert_allclose(first.vectors[0], model.encode("aero notes\n" + docs[0][: first.spans[0][1]]), atol=1e-6)
    assert first.document.tolist() == [0] * (len(first.vectors) - 1) + [1]
    assert len({plain.fingerprint, mean.fingerprint, late.fingerprint, context.fingerprint}) == 4
    with pytest.raises(ValueError, match="unknown chunk aggregate 'sum'; choose one of: max, mean"):
        ChunkedEncoder(model, 5, aggregate="sum")
    with pytest.raises(ValueError, match="late chunking and a context prefix are two ways"):
        ChunkedEncoder(model, 5, late=True, context={})
    tight = ChunkedEncoder(
        _load(tiny_models, "bert", pooling="mean", max_seq_length=20), context={docs[1]: "word " * 10}
    )
    with pytest.raises(ValueError, match="leaves 7 tokens per chunk"):
        tight.encode([docs[1]])


def test_chunked_documents_run_through_retrieval_evaluation_with_a_chosen_main_score(tiny_models, tmp_path):
    folder = tmp_path / "long"
    (folder / "qrels").mkdir(parents=True)
    docs = {"d1": "the wing stalls early . " * 20 + "the flap moves down .", "d2": "heat flows fast . " * 30}
    with open(folder / "corpus.jsonl", "w") as out:
        out.writelines(json.dumps({"_id": k, "title": "", "text": v}) + "\n" for k, v in docs.items())
    with open(folder / "queries.jsonl", "w") as out:
        out.writelines(json.dumps({"_id": q, "text": t}) + "\n" for q, t in (("q1", "flap moves"), ("q2", "heat")))
    (folder / "qrels" / "test_256.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n")
    (folder / "meta.json").write_text(
        json.dumps({"task_type": "Retrieval", "split": "test_256", "main_score": "ndcg_at_1"})
    )
    task = load_task(folder, "long")
    assert task.main_score == "ndcg_at_1"
    (folder / "meta.json").write_text(json.dumps({"task_type": "Retrieval", "main_score": "accuracy"}))
    assert load_task(folder).main_score == "ndcg_at_10"  # not a retrieval score: the type's own
    model = _load(tiny_models, "bert", pooling="mean", normalize=True, max_seq_length=32)
    run = evaluate(ChunkedEncoder(model, late=True), [task])
    result = run.results["long"]
    assert not run.failures and result["main_score"] == "ndcg_at_1"
    assert result["tokens"]["document_tokens"] > 1  # chunks per document


def test_empty_blank_and_huge_documents(tiny_models):
    model = _load(tiny_models, "bert", pooling="mean", max_seq_length=32, normalize=True)
    for late in (False, True):
        chunked = ChunkedEncoder(model, chunk_tokens=8, overlap=1, late=late)
        vectors = chunked.encode(["", "   ", "wing " * 6_000], role="document")
        assert vectors.lengths.tolist()[:2] == [1, 1] and vectors.lengths[2] == len(chunked.spans("wing " * 6_000))
        np.testing.assert_allclose(vectors.data[:2], model.encode(["", "   "]), atol=1e-5, rtol=0)
        assert np.isfinite(vectors.data).all() and np.allclose(np.linalg.norm(vectors.data, axis=1), 1, atol=1e-5)
