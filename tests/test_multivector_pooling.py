"""Hierarchical token pooling of multi-vector documents (gpte.models.multivector.token_pooling), checked against
sentence-transformers 6.3's HierarchicalTokenPooling: the pooled vectors, the saved module folder and the encoders."""

from __future__ import annotations

import json
import math
import string

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sentence_transformers.multi_vector_encoder.modules.token_pooling import (
    HierarchicalTokenPooling as STPooling,
)
from sentence_transformers.multi_vector_encoder.modules.token_pooling import _WardClustering

from gpte.models.multivector import load_multivector_encoder
from gpte.models.multivector.token_pooling import HierarchicalTokenPooling, ward_linkage_function

LENGTHS = [1, 2, 3, 5, 9, 17, 32, 2, 48, 0, 1]
QUERIES = ["what is a wing?", "a", "stall speed of an aircraft wing at low Reynolds numbers and high angles"]
DOCUMENTS = [
    "The wing, it stalls. Yes!",
    "",
    "flow over a flat plate " * 10,
    "heat flux; boundary layer",
    "a",
    "Lift depends on the angle of attack, the air density and the square of the speed over the wing.",
]
COLBERT = {
    "prompts": {"query": "[Q] ", "document": "[D] "},
    "query_expansion": {"length": 12, "strategy": "fixed"},
    "skiplist": list(string.punctuation),
    "document_length": 40,
}
OPTIONS = {
    "factor-2": {"pool_factor": 2},
    "factor-3": {"pool_factor": 3},
    "factor-1.5": {"pool_factor": 1.5},
    "max-tokens-4": {"max_tokens": 4},
    "max-tokens-2": {"max_tokens": 2},
    "threshold-0.6": {"distance_threshold": 0.6},
    "threshold-0": {"distance_threshold": 0.0},
    "normalize-only": {},
}


def _unit_documents(lengths=LENGTHS, dim=16, seed=0, dtype=torch.float32) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [F.normalize(torch.randn(n, dim, generator=generator), dim=-1).to(dtype) for n in lengths]


def _assert_same(ours: list, theirs: list, atol: float = 1e-6) -> None:
    assert len(ours) == len(theirs)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        a, b = (x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x)) for x in (a, b))
        assert a.shape == b.shape, f"document {i}: {tuple(a.shape)} vs {tuple(b.shape)}"
        torch.testing.assert_close(a, b, atol=atol, rtol=0)


def _pair(options: dict, protected: int, normalize: bool = True) -> tuple[HierarchicalTokenPooling, STPooling]:
    kwargs = {**options, "num_protected_tokens": protected, "normalize_embeddings": normalize}
    return HierarchicalTokenPooling(**kwargs), STPooling(**kwargs)


# ----------------------------------------------------------------- the pooled vectors


@pytest.mark.parametrize("normalize", [True, False], ids=["normalized", "raw-means"])
@pytest.mark.parametrize("protected", [0, 1])
@pytest.mark.parametrize("options", OPTIONS.values(), ids=OPTIONS.keys())
def test_pooled_unit_vectors_equal_sentence_transformers(options, protected, normalize):
    documents = _unit_documents()
    ours, theirs = _pair(options, protected, normalize)
    pooled = ours(documents)
    _assert_same(pooled, theirs.pool(documents))
    for document, result in zip(documents, pooled):
        assert result.dtype == document.dtype and len(result) <= len(document)
        if len(document) > protected:  # the protected tokens come first, as they were
            torch.testing.assert_close(result[:protected], document[:protected], atol=1e-6, rtol=0)


def test_token_counts_follow_the_options():
    documents = _unit_documents([1, 2, 3, 11, 21, 40])
    assert [len(d) for d in HierarchicalTokenPooling(pool_factor=2)(documents)] == [1, 2, 2, 6, 11, 20]
    assert [len(d) for d in HierarchicalTokenPooling(pool_factor=3, num_protected_tokens=0)(documents)] == [
        1,
        1,
        1,
        3,
        7,
        13,
    ]
    assert [len(d) for d in HierarchicalTokenPooling(max_tokens=4)(documents)] == [1, 2, 3, 4, 4, 4]
    every = HierarchicalTokenPooling(distance_threshold=0.0)(documents)  # no distinct tokens merge at height 0
    assert [len(d) for d in every] == [1, 2, 3, 11, 21, 40]
    one = HierarchicalTokenPooling(distance_threshold=1e9)(documents)  # everything but [CLS] is one cluster
    assert [len(d) for d in one] == [1, 2, 2, 2, 2, 2]
    mean = F.normalize(documents[-1][1:].mean(0), dim=-1)
    torch.testing.assert_close(one[-1][1], mean, atol=1e-6, rtol=0)


@pytest.mark.parametrize("protected", [0, 1, 2])
def test_short_documents_are_only_normalized(protected):
    documents = [d * 3.0 for d in _unit_documents([0, 1, 2])]
    for options in ({"pool_factor": 2}, {"pool_factor": 3}, {"distance_threshold": 0.1}):
        ours, theirs = _pair(options, protected)
        pooled = ours(documents)
        _assert_same(pooled, theirs.pool(documents))
        if protected:  # at most one poolable token: nothing to cluster
            _assert_same(pooled, [F.normalize(d, dim=-1) for d in documents])
        elif "pool_factor" in options:  # two poolable tokens, a target of one cluster: their mean
            assert [len(d) for d in pooled] == [0, 1, 1]
            torch.testing.assert_close(pooled[2][0], F.normalize(documents[2].mean(0), dim=-1), atol=1e-6, rtol=0)


def test_duplicate_tokens_and_ties_pool_as_sentence_transformers_does():
    """Repeated tokens give exact distance ties and fewer clusters than asked; the labels stay dense."""
    base = _unit_documents([6], seed=3)[0]
    generator = torch.Generator().manual_seed(4)
    documents = [base[torch.randint(0, 6, (n,), generator=generator)] for n in (4, 12, 25)] + [base[:1].repeat(9, 1)]
    for options in ({"pool_factor": 2}, {"max_tokens": 5}, {"distance_threshold": 0.3}):
        ours, theirs = _pair(options, 1)
        _assert_same(ours(documents), theirs.pool(documents))
    assert len(HierarchicalTokenPooling(max_tokens=5)(documents[-1:])[0]) == 2  # [CLS] + one cluster of equal tokens


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_dtypes_pool_as_sentence_transformers_does(dtype):
    documents = _unit_documents([3, 20, 33], dtype=dtype)
    ours, theirs = _pair({"pool_factor": 2}, 1)
    pooled = ours(documents)
    assert all(d.dtype == dtype for d in pooled)
    _assert_same(pooled, theirs.pool(documents), atol=0)


def test_mixed_widths_keep_their_order():
    documents = _unit_documents([7, 12], dim=16) + _unit_documents([9], dim=8) + _unit_documents([15], dim=16, seed=1)
    ours, theirs = _pair({"pool_factor": 2}, 1)
    pooled = ours(documents)
    _assert_same(pooled, theirs.pool(documents))
    assert [d.shape for d in pooled] == [(4, 16), (6, 16), (5, 8), (8, 16)]
    assert ours([]) == []


def test_linkage_library_is_the_one_sentence_transformers_uses():
    """fastcluster where it is installed, else scipy: the two break exact distance ties differently."""
    assert ward_linkage_function() is _WardClustering._linkage_fn()


def test_gradients_pass_straight_through_as_in_sentence_transformers():
    documents = _unit_documents([9])
    ours_input, theirs_input = documents[0].clone().requires_grad_(), documents[0].clone().requires_grad_()
    ours, theirs = _pair({"pool_factor": 2}, 1, normalize=False)
    ours([ours_input])[0].sum().backward()
    theirs.pool([theirs_input])[0].sum().backward()
    torch.testing.assert_close(ours_input.grad, theirs_input.grad, atol=0, rtol=0)


# ----------------------------------------------------------------- settings and the saved folder


def test_config_is_sentence_transformers_config_and_round_trips(tmp_path):
    for options in ({"pool_factor": 2}, {"pool_factor": 1.5, "num_protected_tokens": 0}, {"max_tokens": 8}, {}):
        ours, theirs = HierarchicalTokenPooling(**options), STPooling(**options)
        assert ours.config() == theirs.get_config_dict()
        assert list(ours.config()) == theirs.config_keys
        assert HierarchicalTokenPooling.from_config(json.loads(json.dumps(ours.config()))) == ours
        theirs.save(str(tmp_path / "st"))
        saved = json.loads((tmp_path / "st" / "config.json").read_text())
        assert HierarchicalTokenPooling.from_config(saved).config() == saved
    settings = HierarchicalTokenPooling(distance_threshold=0.25, num_protected_tokens=2).settings()
    assert settings["distance_threshold"] == 0.25 and settings["num_protected_tokens"] == 2
    assert settings["pool_factor"] == 1 and settings["max_tokens"] is None and settings["normalize_embeddings"]
    assert "distance_threshold=0.25" in repr(HierarchicalTokenPooling(distance_threshold=0.25))


def test_config_without_normalize_key_loads_unnormalized_as_sentence_transformers_does(tmp_path):
    folder = tmp_path / "pool"
    folder.mkdir()
    old = {"pool_factor": 2, "max_tokens": None, "num_protected_tokens": 1, "tasks": ["document"]}
    (folder / "config.json").write_text(json.dumps(old))
    theirs = STPooling.load(str(folder))
    ours = HierarchicalTokenPooling.from_config(old)
    assert theirs.normalize_embeddings is False and ours.normalize_embeddings is False
    documents = _unit_documents()
    _assert_same(ours(documents), theirs.pool(documents))
    assert HierarchicalTokenPooling.from_config({}) == HierarchicalTokenPooling(normalize_embeddings=False)
    assert HierarchicalTokenPooling.from_config({"tasks": "document"}) == HierarchicalTokenPooling(
        normalize_embeddings=False
    )


@pytest.fixture(scope="module")
def colbert(tiny_models):
    return load_multivector_encoder(tiny_models["bert"], dimension=16, device="cpu", **COLBERT)


@pytest.mark.parametrize("protected", [0, 1])
@pytest.mark.parametrize(
    "options", [OPTIONS[k] for k in ("factor-2", "factor-3", "max-tokens-4", "threshold-0.6")], ids=str
)
def test_model_token_vectors_pool_as_sentence_transformers_pools_them(colbert, options, protected):
    ours, theirs = _pair(options, protected)
    plain = colbert.encode(DOCUMENTS, role="document")
    tensors = [torch.from_numpy(np.array(v)) for v in plain.to_list()]
    expected = theirs.pool(tensors)
    _assert_same(ours(tensors), expected)
    pooled = colbert.encode(DOCUMENTS, role="document", token_pooling=ours)  # one batch, as the list above
    _assert_same(pooled.to_list(), expected)
    assert (pooled.lengths <= plain.lengths).all() and pooled.lengths.sum() < plain.lengths.sum()


def test_saved_pooling_model_encodes_as_sentence_transformers_and_reloads(tiny_models, tmp_path):
    from sentence_transformers import MultiVectorEncoder as STMultiVectorEncoder

    model = load_multivector_encoder(tiny_models["bert"], dimension=16, device="cpu", **COLBERT)
    unpooled_documents = model.encode(DOCUMENTS, role="document")
    unpooled_queries = model.encode(QUERIES, role="query")
    model.token_pooling = HierarchicalTokenPooling(pool_factor=2)
    folder = model.save(tmp_path / "pooled")
    assert json.loads((folder / "4_HierarchicalTokenPooling" / "config.json").read_text()) == (
        STPooling(pool_factor=2).get_config_dict()
    )

    st = STMultiVectorEncoder(str(folder), device="cpu")
    assert any(isinstance(module, STPooling) for module in st)
    documents = model.encode(DOCUMENTS, role="document")
    _assert_same(documents.to_list(), st.encode_document(DOCUMENTS, convert_to_numpy=True), atol=1e-5)
    assert documents.lengths.sum() < unpooled_documents.lengths.sum()
    queries = model.encode(QUERIES, role="query")  # queries are never pooled
    _assert_same(queries.to_list(), unpooled_queries.to_list(), atol=0)
    _assert_same(queries.to_list(), st.encode_query(QUERIES, convert_to_numpy=True), atol=1e-5)
    assert model.info()["token_pooling"] == HierarchicalTokenPooling(pool_factor=2).settings()

    reloaded = load_multivector_encoder(folder, device="cpu")
    assert reloaded.token_pooling == HierarchicalTokenPooling(pool_factor=2)
    assert reloaded.info()["token_pooling"] == model.info()["token_pooling"]
    _assert_same(reloaded.encode(DOCUMENTS, role="document").to_list(), documents.to_list(), atol=0)
    _assert_same(reloaded.encode(QUERIES, role="query").to_list(), queries.to_list(), atol=0)


# ----------------------------------------------------------------- hostile arguments


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"pool_factor": 0.5}, "pool_factor must be a finite number >= 1"),
        ({"pool_factor": math.nan}, "pool_factor must be a finite number >= 1"),
        ({"pool_factor": math.inf}, "pool_factor must be a finite number >= 1"),
        ({"pool_factor": "2"}, "pool_factor must be a finite number >= 1"),
        ({"pool_factor": True}, "pool_factor must be a finite number >= 1"),
        ({"pool_factor": None}, "pool_factor must be a finite number >= 1"),
        ({"num_protected_tokens": -1}, "num_protected_tokens must be an integer >= 0"),
        ({"num_protected_tokens": 1.0}, "num_protected_tokens must be an integer >= 0"),
        ({"normalize_embeddings": "yes"}, "normalize_embeddings must be True or False"),
        ({"max_tokens": 1}, r"max_tokens must be an integer above num_protected_tokens \(1\)"),
        ({"max_tokens": 0, "num_protected_tokens": 0}, "max_tokens must be an integer above"),
        ({"max_tokens": 4.5}, "max_tokens must be an integer above"),
        ({"max_tokens": True, "num_protected_tokens": 0}, "max_tokens must be an integer above"),
        ({"distance_threshold": -0.1}, "distance_threshold must be a finite number >= 0"),
        ({"distance_threshold": math.nan}, "distance_threshold must be a finite number >= 0"),
        ({"distance_threshold": "0.5"}, "distance_threshold must be a finite number >= 0"),
        ({"pool_factor": 2, "max_tokens": 8}, "mutually exclusive; got pool_factor and max_tokens"),
        ({"pool_factor": 2, "distance_threshold": 0.5}, "mutually exclusive; got pool_factor and distance_threshold"),
        ({"max_tokens": 8, "distance_threshold": 0.5}, "mutually exclusive; got max_tokens and distance_threshold"),
    ],
)
def test_bad_options_are_refused_with_the_allowed_values(options, message):
    with pytest.raises(ValueError, match=message):
        HierarchicalTokenPooling(**options)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"pool_factor": 2, "use_kernels": True}, r"unknown HierarchicalTokenPooling config keys \['use_kernels'\]"),
        ({"tasks": ["query", "document"]}, r"tasks must be \['document'\]"),
        ({"tasks": ["query"]}, r"tasks must be \['document'\]"),
        ([("pool_factor", 2)], "config is a JSON object"),
        ({"pool_factor": -3}, "pool_factor must be a finite number >= 1"),
    ],
)
def test_bad_configs_are_refused(config, message):
    with pytest.raises(ValueError, match=message):
        HierarchicalTokenPooling.from_config(config)


def test_bad_documents_are_refused():
    pooler = HierarchicalTokenPooling(pool_factor=2)
    with pytest.raises(ValueError, match="takes a list of"):
        pooler(torch.zeros(2, 5, 4))
    with pytest.raises(ValueError, match="document 1: .* got a 1-D"):
        pooler([torch.zeros(3, 4), torch.zeros(4)])
    with pytest.raises(ValueError, match="document 0: .* got a 2-D torch.int64"):
        pooler([torch.zeros(3, 4, dtype=torch.long)])
    with pytest.raises(ValueError, match="document 0: .* got ndarray"):
        pooler([np.zeros((3, 4), dtype=np.float32)])
    broken = _unit_documents([6])[0]
    broken[3, 0] = math.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        pooler([broken])
