"""sentence-transformers habits on gpte models: the keyword names a sentence-transformers user types give gpte's
vectors (and sentence-transformers' own, on the same folder), ``encode_query``/``encode_document``, the dimension
getters, ``gpte.util.semantic_search``/``paraphrase_mining`` equal to ``sentence_transformers.util``'s, and
``push_to_hub`` through huggingface_hub's real calls against a local hub stand-in."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import CORPUS, SENTENCES
from huggingface_hub import HfApi
from sentence_transformers import SentenceTransformer
from sentence_transformers import util as st_util
from transformers import AutoTokenizer

from gpte import Embedder
from gpte.models.static import StaticEmbedder
from gpte.util import paraphrase_mining, paraphrase_mining_embeddings, semantic_search

PROMPTS = {"query": "query: ", "document": "passage: "}
TEXTS = list(dict.fromkeys(CORPUS + SENTENCES))  # distinct texts


@pytest.fixture(scope="module")
def folder(tiny_models, tmp_path_factory) -> Path:
    """The tiny BERT with different query and document prompts, saved in the sentence-transformers layout."""
    model = Embedder.load(tiny_models["bert"], pooling="mean", device="cpu", prompts=PROMPTS)
    return model.save(tmp_path_factory.mktemp("st-habits") / "model")


@pytest.fixture(scope="module")
def model(folder) -> Embedder:
    return Embedder.load(folder, device="cpu")


@pytest.fixture(scope="module")
def st_model(folder) -> SentenceTransformer:
    return SentenceTransformer(str(folder), device="cpu")


def _equal(a, b) -> None:
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-6)


def test_st_names_give_the_vectors_of_gptes_own_options(model):
    np.testing.assert_array_equal(model.encode(TEXTS, normalize_embeddings=True), model.encode(TEXTS, normalize=True))
    np.testing.assert_array_equal(model.encode(TEXTS, normalize_embeddings=False), model.encode(TEXTS))
    np.testing.assert_array_equal(model.encode(TEXTS, prompt_name="query"), model.encode(TEXTS, role="query"))
    np.testing.assert_array_equal(model.encode(TEXTS, show_progress_bar=False), model.encode(TEXTS))
    np.testing.assert_array_equal(model.encode(TEXTS, device="cpu"), model.encode(TEXTS))
    tensor = model.encode(TEXTS, convert_to_tensor=True)
    assert isinstance(tensor, torch.Tensor)
    assert torch.equal(tensor, model.encode(TEXTS, convert_to="torch"))
    rows = model.encode(TEXTS, convert_to_numpy=False)  # sentence-transformers: a list of 1-D tensors
    assert isinstance(rows, list) and len(rows) == len(TEXTS)
    assert torch.equal(torch.stack(rows), tensor)
    assert isinstance(model.encode(TEXTS[0], convert_to_numpy=False), torch.Tensor)  # one text: one tensor
    with_report = model.encode_with_report(TEXTS, prompt_name="document", normalize_embeddings=True)
    np.testing.assert_array_equal(with_report.vectors, model.encode(TEXTS, role="document", normalize=True))
    assert model.get_embedding_dimension() == model.get_sentence_embedding_dimension() == model.dimension == 32


def test_st_names_give_sentence_transformers_vectors(model, st_model):
    """The same call, typed the sentence-transformers way, on gpte and sentence-transformers."""
    calls = [
        {"normalize_embeddings": True},
        {"prompt_name": "document"},
        {"prompt": "custom: "},
        {"precision": "int8", "batch_size": 2},
        {"convert_to_tensor": True, "normalize_embeddings": True},
    ]
    for options in calls:
        _equal(model.encode(TEXTS, **options), st_model.encode(TEXTS, **options))
    _equal(model.encode_query(TEXTS), st_model.encode_query(TEXTS))
    _equal(model.encode_document(TEXTS), st_model.encode_document(TEXTS))
    assert not np.allclose(model.encode_query(TEXTS), model.encode_document(TEXTS))  # the prompts differ
    _equal(model.encode_query(TEXTS), model.encode(TEXTS, role="query"))
    _equal(model.encode_document(TEXTS), model.encode(TEXTS, role="document"))
    a, b = model.encode(TEXTS[:3]), model.encode(TEXTS[3:6])
    _equal(model.similarity(a, b), st_model.similarity(a, b))
    _equal(model.similarity_pairwise(a, b), st_model.similarity_pairwise(a, b))
    assert model.similarity_fn_name == st_model.similarity_fn_name == "cosine"
    assert model.get_embedding_dimension() == st_model.get_embedding_dimension()


def test_encode_document_ignores_a_passage_prompt_like_st(tiny_models, tmp_path):
    """sentence-transformers gives every model a "document" prompt (empty unless set), so encode_document does not
    fall back to "passage"; gpte's document role does the same, and prompt_name="passage" picks it."""
    gpte_model = Embedder.load(
        tiny_models["bert"], pooling="mean", device="cpu", prompts={"query": "q: ", "passage": "p: "}
    )
    st_model = SentenceTransformer(str(gpte_model.save(tmp_path / "e5-like")), device="cpu")
    _equal(gpte_model.encode_document(TEXTS), st_model.encode_document(TEXTS))
    np.testing.assert_array_equal(gpte_model.encode_document(TEXTS), gpte_model.encode(TEXTS))
    _equal(
        gpte_model.encode_document(TEXTS, prompt_name="passage"), st_model.encode_document(TEXTS, prompt_name="passage")
    )
    _equal(gpte_model.encode_query(TEXTS), st_model.encode_query(TEXTS))


def test_normalize_embeddings_false_keeps_a_normalizing_models_normalization(folder):
    """As in sentence-transformers, where normalize_embeddings=False leaves a model's Normalize module in place."""
    normalizing = Embedder.load(folder, device="cpu", normalize=True)
    vectors = normalizing.encode(TEXTS, normalize_embeddings=False)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(vectors, normalizing.encode(TEXTS))


@pytest.mark.parametrize(
    "options, error, message",
    [
        (
            {"normalize": False, "normalize_embeddings": True},
            ValueError,
            "normalize=False and normalize_embeddings=True",
        ),
        ({"show_progress": True, "show_progress_bar": False}, ValueError, "show_progress=True and show_progress_bar"),
        ({"convert_to": "torch", "convert_to_numpy": True}, ValueError, "convert_to='torch'"),
        ({"convert_to": "torch", "convert_to_tensor": False}, ValueError, "convert_to='torch'"),
        ({"prompt": "x: ", "prompt_name": "query"}, ValueError, "prompt='x: ' and prompt_name='query'"),
        ({"prompt_name": "nope"}, ValueError, "document, query"),
        ({"device": "meta"}, ValueError, "model.to('meta')"),
        ({"device": ["cpu", "cpu"]}, ValueError, "gpte.runtime.multiprocess"),
        ({"normalise": True}, TypeError, "normalize_embeddings"),
        ({"pool": {}}, TypeError, "convert_to_tensor"),
    ],
)
def test_bad_or_conflicting_st_names_are_refused(model, options, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        model.encode(TEXTS, **options)


def test_agreeing_aliases_are_accepted(model):
    np.testing.assert_array_equal(
        model.encode(TEXTS, normalize=True, normalize_embeddings=True), model.encode(TEXTS, normalize=True)
    )
    np.testing.assert_array_equal(
        model.encode(TEXTS, prompt="query", prompt_name="query"), model.encode(TEXTS, role="query")
    )


@pytest.fixture(scope="module")
def static(folder) -> StaticEmbedder:
    tokenizer = AutoTokenizer.from_pretrained(folder)
    table = np.random.default_rng(0).standard_normal((len(tokenizer), 16)).astype(np.float32)
    return StaticEmbedder(table, tokenizer, {"normalize": False, "similarity": "cosine"})


def test_static_model_takes_the_st_names_that_apply(static):
    np.testing.assert_array_equal(static.encode(TEXTS, normalize_embeddings=True), static.encode(TEXTS, normalize=True))
    assert torch.equal(static.encode(TEXTS, convert_to_tensor=True), static.encode(TEXTS, convert_to="torch"))
    np.testing.assert_array_equal(static.encode_query(TEXTS), static.encode(TEXTS))
    np.testing.assert_array_equal(static.encode_document(TEXTS, show_progress_bar=True), static.encode(TEXTS))
    assert static.get_embedding_dimension() == static.get_sentence_embedding_dimension() == 16
    assert static.similarity_fn_name == "cosine"
    with pytest.raises(ValueError, match="no prompts"):
        static.encode(TEXTS, prompt_name="query")
    with pytest.raises(ValueError, match="normalize=False and normalize_embeddings=True"):
        static.encode(TEXTS, normalize=False, normalize_embeddings=True)
    with pytest.raises(ValueError, match="runs on the cpu"):
        static.encode(TEXTS, device="cuda")


# ----------------------------------------------------------------- gpte.util against sentence_transformers.util


def _assert_same_hits(ours, theirs) -> None:
    assert [[hit["corpus_id"] for hit in hits] for hits in ours] == [
        [hit["corpus_id"] for hit in hits] for hits in theirs
    ]
    for mine, reference in zip(ours, theirs):
        _equal([hit["score"] for hit in mine], [hit["score"] for hit in reference])
        assert all(type(hit["corpus_id"]) is int and type(hit["score"]) is float for hit in mine)


@pytest.mark.parametrize("chunks", [{}, {"query_chunk_size": 2, "corpus_chunk_size": 7}])
def test_semantic_search_equals_sentence_transformers(chunks):
    rng = np.random.default_rng(1)
    queries, corpus = rng.standard_normal((5, 16)).astype(np.float32), rng.standard_normal((40, 16)).astype(np.float32)
    for top_k in (1, 4, 100):
        theirs = st_util.semantic_search(torch.from_numpy(queries), torch.from_numpy(corpus), top_k=top_k, **chunks)
        _assert_same_hits(semantic_search(queries, corpus, top_k=top_k, **chunks), theirs)
        _assert_same_hits(
            semantic_search(torch.from_numpy(queries), corpus, top_k=top_k, score_function=st_util.cos_sim), theirs
        )
    theirs = st_util.semantic_search(
        torch.from_numpy(queries), torch.from_numpy(corpus), score_function=st_util.dot_score
    )
    _assert_same_hits(semantic_search(queries, corpus, score_function="dot", **chunks), theirs)
    _assert_same_hits(
        semantic_search(queries[0], corpus, top_k=3), st_util.semantic_search(queries[0], corpus, top_k=3)
    )


def test_semantic_search_refuses_bad_arguments():
    vectors = np.ones((2, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="cosine, dot, euclidean, manhattan"):
        semantic_search(vectors, vectors, score_function="cos")
    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        semantic_search(vectors, vectors, top_k=0)
    with pytest.raises(ValueError, match="query_chunk_size must be a positive integer"):
        semantic_search(vectors, vectors, query_chunk_size=0)


def test_paraphrase_mining_equals_sentence_transformers(model, st_model):
    for options in ({"top_k": 3}, {"top_k": 2, "max_pairs": 5}, {"prompt_name": "query", "top_k": 100}):
        ours = paraphrase_mining(model, TEXTS, **options)
        theirs = st_util.paraphrase_mining(st_model, TEXTS, **options)
        assert [pair[1:] for pair in ours] == [pair[1:] for pair in theirs]
        _equal([pair[0] for pair in ours], [pair[0] for pair in theirs])
    vectors = model.encode(TEXTS)
    chunked = paraphrase_mining_embeddings(vectors, query_chunk_size=3, corpus_chunk_size=4, top_k=2)
    reference = st_util.paraphrase_mining_embeddings(
        torch.from_numpy(vectors), query_chunk_size=3, corpus_chunk_size=4, top_k=2
    )
    assert [pair[1:] for pair in chunked] == [pair[1:] for pair in reference]


# ----------------------------------------------------------------- push_to_hub against a local hub stand-in


@pytest.fixture()
def local_hub(monkeypatch, tmp_path):
    """huggingface_hub's HfApi with create_repo/upload_folder served from a local folder: ``calls`` records them."""
    hub, calls = tmp_path / "hub", []

    def create_repo(self, repo_id, *, private=None, exist_ok=False, **options):
        calls.append(("create_repo", repo_id, private, exist_ok, self.token))
        (hub / repo_id).mkdir(parents=True, exist_ok=exist_ok)
        return SimpleNamespace(repo_id=repo_id)

    def upload_folder(self, *, repo_id, folder_path, commit_message=None, revision=None, create_pr=False, **options):
        calls.append(("upload_folder", repo_id, commit_message, revision, create_pr))
        shutil.copytree(folder_path, hub / repo_id, dirs_exist_ok=True)
        return SimpleNamespace(commit_url=f"https://hub.test/{repo_id}/commit/1", pr_url=None)

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    return SimpleNamespace(root=hub, calls=calls)


def test_push_to_hub_uploads_a_folder_that_gpte_and_st_load_identically(model, local_hub):
    url = model.push_to_hub("me/tiny", private=True, token="hf_x", commit_message="first")
    assert url == "https://hub.test/me/tiny/commit/1"
    assert local_hub.calls == [
        ("create_repo", "me/tiny", True, True, "hf_x"),
        ("upload_folder", "me/tiny", "first", None, False),
    ]
    pushed = local_hub.root / "me" / "tiny"
    reference = model.encode_query(TEXTS)
    np.testing.assert_array_equal(Embedder.load(pushed, device="cpu").encode_query(TEXTS), reference)
    _equal(SentenceTransformer(str(pushed), device="cpu").encode_query(TEXTS), reference)
    model.push_to_hub("me/tiny")  # an existing repository is fine by default (exist_ok=True)
    assert local_hub.calls[-1][2].startswith("Upload gpte model")
    with pytest.raises(FileExistsError):
        model.push_to_hub("me/tiny", exist_ok=False)


@pytest.mark.real
def test_packaged_minilm_typed_the_st_way_matches_sentence_transformers():
    """all-MiniLM-L6-v2 normalizes (a Normalize module): normalize_embeddings=False keeps that in both libraries."""
    from conftest import minilm_folder

    ours, theirs = Embedder.load(device="cpu"), SentenceTransformer(str(minilm_folder()), device="cpu")
    for options in ({"normalize_embeddings": False}, {"convert_to_tensor": True}, {"show_progress_bar": False}):
        _equal(ours.encode(TEXTS, **options), theirs.encode(TEXTS, **options))
    _equal(ours.encode_query(TEXTS), theirs.encode_query(TEXTS))
    mined = paraphrase_mining(ours, TEXTS, top_k=2)
    reference = st_util.paraphrase_mining(theirs, TEXTS, top_k=2)
    assert [pair[1:] for pair in mined] == [pair[1:] for pair in reference]
    _equal([pair[0] for pair in mined], [pair[0] for pair in reference])


def test_search_helpers_on_empty_and_mismatched_inputs():
    """Empty corpora and queries give empty answers as sentence-transformers' do; a dimension mismatch or a top_k
    below 1 is refused with the values named."""
    queries = np.random.default_rng(0).random((2, 4), dtype=np.float32)
    assert semantic_search(queries, np.zeros((0, 4), np.float32), top_k=3) == [[], []]
    assert semantic_search(np.zeros((0, 4), np.float32), queries, top_k=3) == []
    assert paraphrase_mining_embeddings(np.zeros((0, 4), np.float32)) == []
    assert paraphrase_mining_embeddings(queries[:1]) == []
    with pytest.raises(ValueError, match="vectors differ in dimension: 4 and 5"):
        semantic_search(queries, np.ones((3, 5), np.float32))
    with pytest.raises(ValueError, match="top_k must be a positive integer, got 0"):
        semantic_search(queries, queries, top_k=0)
