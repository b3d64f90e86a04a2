"""The sparse model kind: SPLADE and inference-free SPLADE equal to sentence-transformers' SparseEncoder on the same
folders (both ways), pruning, decoding, the encode report, PromptReps' bag of the text's own words, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse
import torch
from sentence_transformers.base.modules import Router, Transformer
from sentence_transformers.sparse_encoder import SparseEncoder as STSparseEncoder
from sentence_transformers.sparse_encoder.models import SparseStaticEmbedding, SpladePooling

from gpte.models.protocol import SparseModel, require_dense, require_sparse
from gpte.models.sparse import SparseEncoder, active_dimensions, load_sparse_encoder, promptreps
from gpte.models.sparse.folders import NEW_HEAD_BIAS
from gpte.models.sparse.heads import _word_groups

TEXTS = [
    "How do wings stall at a high angle of attack?",
    "hello world",
    "The quick brown fox jumps over the lazy dog near the river bank at dawn.",
    "hello world",
    "",
]


def st_dense(model: STSparseEncoder, texts: list[str], role: str) -> np.ndarray:
    encode = model.encode_query if role == "query" else model.encode_document
    return encode(texts, convert_to_tensor=True).to_dense().numpy()


@pytest.fixture(scope="module")
def st_splade_folder(tiny_models, tmp_path_factory):
    """sentence-transformers' own SPLADE folder around the tiny masked LM."""
    folder = tmp_path_factory.mktemp("st") / "splade"
    STSparseEncoder(
        modules=[Transformer(str(tiny_models["bert-mlm"]), transformer_task="fill-mask"), SpladePooling()]
    ).save(str(folder))
    return folder


@pytest.fixture(scope="module")
def st_inference_free_folder(tiny_models, tmp_path_factory):
    """sentence-transformers' inference-free SPLADE: learned query weights (seeded), SPLADE documents."""
    mlm = Transformer(str(tiny_models["bert-mlm"]), transformer_task="fill-mask")
    generator = torch.Generator().manual_seed(0)
    weight = torch.rand(mlm.tokenizer.vocab_size, generator=generator)
    router = Router.for_query_document(
        query_modules=[SparseStaticEmbedding(tokenizer=mlm.tokenizer, weight=weight)],
        document_modules=[mlm, SpladePooling("max")],
    )
    folder = tmp_path_factory.mktemp("st") / "inference-free"
    STSparseEncoder(modules=[router], similarity_fn_name="dot").save(str(folder))
    return folder


@pytest.mark.parametrize("role", ["query", "document"])
def test_splade_equals_sentence_transformers(st_splade_folder, role):
    ours = load_sparse_encoder(st_splade_folder, device="cpu")
    expected = st_dense(STSparseEncoder(str(st_splade_folder), device="cpu"), TEXTS, role)
    vectors = ours.encode(TEXTS, role=role)
    assert isinstance(vectors, scipy.sparse.csr_matrix) and vectors.dtype == np.float32
    assert vectors.shape == (len(TEXTS), ours.vocab_size) == expected.shape
    np.testing.assert_allclose(vectors.toarray(), expected, atol=1e-5)


@pytest.mark.parametrize("role", ["query", "document"])
def test_inference_free_splade_equals_sentence_transformers(st_inference_free_folder, role):
    ours = load_sparse_encoder(st_inference_free_folder, device="cpu")
    assert ours.architecture == "inference-free-splade"
    expected = st_dense(STSparseEncoder(str(st_inference_free_folder), device="cpu"), TEXTS, role)
    np.testing.assert_allclose(ours.encode(TEXTS, role=role).toarray(), expected, atol=1e-5)
    if role == "query":  # a query's weights sit on its own tokens only
        ids = set(ours.tokenizer("hello world", add_special_tokens=False)["input_ids"])
        assert set(ours.encode("hello world", role="query").indices) == ids


@pytest.mark.parametrize("kind", ["splade", "inference-free"])
def test_saved_folder_loads_in_sentence_transformers_with_equal_vectors(
    kind, st_splade_folder, st_inference_free_folder, tmp_path
):
    source = st_splade_folder if kind == "splade" else st_inference_free_folder
    ours = load_sparse_encoder(source, device="cpu")
    ours.prompts = ours.prompts.from_strings({"query": "query: "})
    saved = ours.save(tmp_path / "model")
    peer = STSparseEncoder(str(saved), device="cpu")
    assert peer.similarity_fn_name == "dot"
    for role in ("query", "document"):
        np.testing.assert_allclose(ours.encode(TEXTS, role=role).toarray(), st_dense(peer, TEXTS, role), atol=1e-5)
    again = load_sparse_encoder(saved, device="cpu")
    assert again.fingerprint == ours.fingerprint
    assert (saved / "README.md").is_file()


def test_encoder_folder_without_mlm_head_gets_one_tied_to_word_embeddings(tiny_models):
    model = load_sparse_encoder(tiny_models["bert"], device="cpu")  # a plain BertModel folder
    mlm = model.document_head.mlm
    assert mlm.get_output_embeddings().weight.data_ptr() == mlm.get_input_embeddings().weight.data_ptr()
    dense = mlm.cls.predictions.transform.dense
    torch.testing.assert_close(dense.weight, torch.eye(dense.weight.shape[0]))  # init_mlm_head: identity transform
    assert (mlm.get_output_embeddings().bias == NEW_HEAD_BIAS).all()
    assert model.encode(["hello world"]).nnz < model.vocab_size / 10  # starts sparse


def test_protocol_and_consumer_checks(splade, embedder):
    assert isinstance(splade, SparseModel) and splade.output_kind == "sparse" and splade.similarity_name == "dot"
    assert require_sparse(splade, "test") is splade
    with pytest.raises(TypeError, match="takes a dense model .* got a sparse model"):
        require_dense(splade, "gpte index")
    with pytest.raises(TypeError, match="takes a sparse model .* got a dense model"):
        require_sparse(embedder, "POST /embed_sparse")


def test_pruning_keeps_the_largest_weights(splade):
    full = splade.encode(TEXTS).toarray()
    top = splade.encode(TEXTS, top_k=5).toarray()
    for dense_row, top_row in zip(full, top):
        kept = np.flatnonzero(top_row)
        assert len(kept) == min(5, np.count_nonzero(dense_row))
        np.testing.assert_array_equal(top_row[kept], dense_row[kept])
        assert dense_row[kept].min() >= np.sort(dense_row)[-5]
    cut = splade.encode(TEXTS, threshold=0.3).toarray()
    np.testing.assert_array_equal(cut, np.where(full > 0.3, full, 0))
    assert active_dimensions(splade.encode(TEXTS, top_k=5)) == pytest.approx(5.0)


def test_rows_follow_input_order_and_duplicates_are_encoded_once(splade):
    result = splade.encode_with_report(TEXTS, batch_size=2)
    assert result.report.n_texts == 5 and result.report.n_unique == 4
    alone = [splade.encode(text).toarray()[0] for text in TEXTS]
    np.testing.assert_allclose(result.vectors.toarray(), np.stack(alone), atol=1e-5)


def test_truncation_is_reported(splade):
    splade.max_seq_length = 16
    try:
        result = splade.encode_with_report(["short", "word " * 40])
    finally:
        splade.max_seq_length = 128
    assert result.report.truncated_indices == [1]


def test_decode_reads_tokens_and_weights_largest_first(splade):
    vector = splade.encode("wings stall")
    decoded = splade.decode(vector)
    weights = [weight for _, weight in decoded]
    assert len(decoded) == vector.nnz and weights == sorted(weights, reverse=True)
    token, weight = decoded[0]
    assert vector[0, splade.tokenizer.convert_tokens_to_ids(token)] == pytest.approx(weight)
    assert splade.decode(vector.toarray()[0], top_k=3) == decoded[:3]
    with pytest.raises(ValueError, match="one vector of 30522 dimensions"):
        splade.decode(np.ones(7))


def test_similarity_is_the_dot_product(splade):
    a, b = splade.encode(TEXTS[:2]), splade.encode(TEXTS[2:])
    np.testing.assert_allclose(splade.similarity(a, b), a.toarray() @ b.toarray().T, rtol=1e-5)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"texts": [1, "a"]}, "texts\\[0\\] is int"),
        ({"texts": None}, "texts must be a string or a sequence"),
        ({"top_k": 0}, "top_k must be a positive integer"),
        ({"threshold": -1.0}, "threshold must be 0 or more"),
        ({"threshold": float("nan")}, "threshold must be a finite number"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"role": "passage"}, "unknown role 'passage'"),
    ],
)
def test_bad_input_is_refused_with_the_allowed_values(splade, options, message):
    arguments = {"texts": ["a text"]} | options
    with pytest.raises((TypeError, ValueError), match=message):
        splade.encode(**arguments)


def test_promptreps_weights_only_the_texts_own_words(chat_llama):
    model = promptreps(chat_llama, top_k=4)
    assert model.architecture == "promptreps" and "{text}" in model.prompts.templates["document"].template
    text = "the cat sat on the mat"
    vector = model.encode(text, role="document")
    groups = _word_groups(model.tokenizer)
    own_words = {groups[i] for i in model.tokenizer(text, add_special_tokens=False)["input_ids"]} - {0}
    assert 0 < vector.nnz <= 4
    assert {groups[i] for i in vector.indices} <= own_words
    logits_order = model.encode(text, role="document", top_k=1).indices
    assert logits_order[0] == vector.indices[np.argmax(vector.data)]


def test_promptreps_folder_round_trip(chat_llama, tmp_path):
    model = promptreps(chat_llama, top_k=8)
    saved = model.save(tmp_path / "promptreps")
    again = load_sparse_encoder(saved)
    assert again.architecture == "promptreps" and again.document_head.top_k == 8
    np.testing.assert_allclose(again.encode(TEXTS[:3]).toarray(), model.encode(TEXTS[:3]).toarray(), atol=1e-6)


def test_a_sparse_encoder_needs_heads_of_one_vocabulary(splade):
    from gpte.models.sparse.heads import StaticQueryHead

    with pytest.raises(ValueError, match="query head has 7 dimensions"):
        SparseEncoder(splade.document_head, splade.tokenizer, 32, query_head=StaticQueryHead(torch.ones(7)))


def test_promptreps_cuts_a_long_text_not_the_prompts_end(chat_llama):
    model = promptreps(chat_llama, top_k=4, max_seq_length=160)
    long_text = "the cat sat on the mat " * 40
    result = model.encode_with_report([long_text, "the cat"], role="document")
    assert result.report.truncated_indices == [0]
    batch = model.tokenize([long_text], role="document")
    ending = model.tokenizer(model.prompts.templates["document"].template.split("{text}")[1], add_special_tokens=False)
    assert batch.input_ids[0, -len(ending["input_ids"]) :].tolist() == ending["input_ids"]  # the answer's opening
    assert batch.input_ids.shape[1] <= 160


def test_top_k_travels_as_max_active_dims_both_ways(st_splade_folder, tmp_path):
    model = load_sparse_encoder(st_splade_folder, device="cpu")
    model.top_k = 7
    saved = model.save(tmp_path / "pruned")
    assert load_sparse_encoder(saved).top_k == 7
    peer = STSparseEncoder(str(saved), device="cpu")
    assert peer.max_active_dims == 7
    np.testing.assert_allclose(model.encode(TEXTS).toarray(), st_dense(peer, TEXTS, "document"), atol=1e-5)


def test_no_texts_give_an_empty_matrix(splade):
    result = splade.encode_with_report([])
    assert result.vectors.shape == (0, splade.vocab_size) and result.report.n_texts == 0
    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        splade.decode(splade.encode("a"), top_k=-1)
