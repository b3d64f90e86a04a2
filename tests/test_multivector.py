"""The multi-vector (ColBERT) model kind on tiny random models: token vectors equal sentence-transformers 6's
MultiVectorEncoder (markers, query expansion fixed/min/attended, document skiplist and length), folders read and
written both ways (MultiVectorEncoder, PyLate v3), MaxSim as computed by hand, ``TokenVectors``, ``gpte encode
--kind multivector`` (resumable) and ``POST /embed_multivector``; hostile inputs refused with their reason."""

from __future__ import annotations

import importlib
import json
import shutil
import string

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from gpte.cli import main
from gpte.models.loading import load_model
from gpte.models.multivector import (
    MultiVectorEncoder,
    QueryExpansion,
    TokenVectors,
    load_multivector_encoder,
    maxsim,
    maxsim_matrix,
)
from gpte.serve.app import create_app

QUERIES = ["what is a wing?", "a", "stall speed of an aircraft wing at low Reynolds numbers and high angles"]
DOCUMENTS = ["The wing, it stalls. Yes!", "", "flow over a flat plate " * 10, "heat flux; boundary layer"]
COLBERT = {
    "prompts": {"query": "[Q] ", "document": "[D] "},
    "query_expansion": {"length": 12, "strategy": "fixed"},
    "skiplist": list(string.punctuation),
    "document_length": 20,
}


@pytest.fixture(scope="module")
def colbert(tiny_models) -> MultiVectorEncoder:
    return load_multivector_encoder(tiny_models["bert"], dimension=16, device="cpu", **COLBERT)


def _st(folder):
    from sentence_transformers import MultiVectorEncoder as STMultiVectorEncoder

    return STMultiVectorEncoder(str(folder), device="cpu")


def _assert_equal_tokens(ours: TokenVectors, theirs: list, atol: float = 1e-5) -> None:
    assert len(ours) == len(theirs)
    for i, expected in enumerate(theirs):
        expected = np.asarray(expected)
        assert ours[i].shape == expected.shape, f"text {i}: {ours[i].shape} tokens vs {expected.shape}"
        np.testing.assert_allclose(ours[i], expected, atol=atol)


@pytest.mark.parametrize(
    "settings",
    [
        COLBERT,
        {**COLBERT, "query_expansion": {"length": 6, "strategy": "min"}, "query_length": 16},
        {**COLBERT, "query_expansion": {"length": 12, "strategy": "fixed", "attend": True}},
        {"document_length": 9},
    ],
    ids=["colbert", "min-expansion", "attended-expansion", "plain"],
)
def test_token_vectors_equal_sentence_transformers(tiny_models, tmp_path, settings):
    model = load_multivector_encoder(tiny_models["bert"], dimension=16, device="cpu", **settings)
    st = _st(model.save(tmp_path / "mv"))
    queries, documents = model.encode(QUERIES, role="query"), model.encode(DOCUMENTS, role="document")
    _assert_equal_tokens(queries, st.encode_query(QUERIES, convert_to_numpy=True))
    _assert_equal_tokens(documents, st.encode_document(DOCUMENTS, convert_to_numpy=True))
    expected = st.similarity(st.encode_query(QUERIES), st.encode_document(DOCUMENTS)).numpy()
    np.testing.assert_allclose(model.similarity(queries, documents), expected, atol=1e-5)
    pairs = st.similarity_pairwise(st.encode_query(QUERIES), st.encode_document(DOCUMENTS[:3])).numpy()
    np.testing.assert_allclose(model.similarity_pairwise(queries, documents.take([0, 1, 2])), pairs, atol=1e-5)


def test_colbert_settings_shape_the_tokens(colbert):
    queries = colbert.encode(QUERIES, role="query")
    assert queries.lengths.tolist() == [12, 12, 12]  # fixed expansion: every query is 12 tokens, [MASK]-padded
    documents = colbert.encode(DOCUMENTS, role="document")
    ids = colbert.tokenizer("[D] The wing, it stalls. Yes!")["input_ids"]
    punctuation = {colbert.tokenizer.convert_tokens_to_ids(p) for p in string.punctuation}
    assert documents.lengths[0] == sum(1 for i in ids if i not in punctuation)
    assert documents.lengths[2] == 20 - 2  # cut to document_length; the marker's "[" and "]" are punctuation here
    np.testing.assert_allclose(np.linalg.norm(documents.data, axis=1), 1.0, atol=1e-6)
    assert colbert.encode(DOCUMENTS).lengths.tolist() == documents.lengths.tolist()  # no role: a document


def test_sentence_transformers_folder_loads_with_equal_vectors(tiny_models, tmp_path):
    st = _st(tiny_models["bert"])  # a plain transformer: sentence-transformers adds a random 128-d projection
    st.save(str(tmp_path / "st"))
    model = load_multivector_encoder(tmp_path / "st", device="cpu")
    assert model.dimension == 128
    _assert_equal_tokens(model.encode(DOCUMENTS, role="document"), st.encode_document(DOCUMENTS, convert_to_numpy=True))
    _assert_equal_tokens(model.encode(QUERIES, role="query"), st.encode_query(QUERIES, convert_to_numpy=True))


def test_pylate_folder_reads_as_sentence_transformers_reads_it(tiny_models, tmp_path):
    """PyLate v3: [Transformer, pylate Dense], markers as added tokens, lengths and expansion as top-level keys."""
    from transformers import AutoModel, AutoTokenizer

    folder = tmp_path / "pylate"
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["bert"])
    tokenizer.add_tokens(["[Q] ", "[D] "])
    backbone = AutoModel.from_pretrained(tiny_models["bert"])
    backbone.resize_token_embeddings(len(tokenizer))
    backbone.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "1_Dense").mkdir()
    torch.manual_seed(1)
    from safetensors.torch import save_file

    save_file({"linear.weight": torch.randn(8, 32)}, folder / "1_Dense" / "model.safetensors")
    config = {
        "in_features": 32,
        "out_features": 8,
        "bias": False,
        "activation_function": "torch.nn.modules.linear.Identity",
    }
    (folder / "1_Dense" / "config.json").write_text(json.dumps(config))
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 64, "do_lower_case": False}))
    st_config = {
        "model_type": "ColBERT",
        "query_prefix": "[Q] ",
        "document_prefix": "[D] ",
        "query_length": 10,
        "document_length": 16,
        "attend_to_expansion_tokens": False,
        "similarity_fn_name": "MaxSim",
        "prompts": {},
    }
    (folder / "config_sentence_transformers.json").write_text(json.dumps(st_config))
    model = load_multivector_encoder(folder, device="cpu")
    st = _st(folder)
    assert model.query_expansion == QueryExpansion(10) and model.skiplist == list(string.punctuation)
    _assert_equal_tokens(model.encode(QUERIES, role="query"), st.encode_query(QUERIES, convert_to_numpy=True))
    _assert_equal_tokens(model.encode(DOCUMENTS, role="document"), st.encode_document(DOCUMENTS, convert_to_numpy=True))
    reloaded = load_multivector_encoder(model.save(tmp_path / "resaved"), device="cpu")
    _assert_equal_tokens(reloaded.encode(QUERIES, role="query"), model.encode(QUERIES, role="query").to_list(), 0)


def test_saved_model_reloads_with_every_setting(colbert, tmp_path):
    reloaded = load_multivector_encoder(colbert.save(tmp_path / "m"), device="cpu")
    assert reloaded.info() | {"name": ""} == colbert.info() | {"name": ""}
    np.testing.assert_array_equal(reloaded.encode(DOCUMENTS).data, colbert.encode(DOCUMENTS).data)
    with pytest.raises(FileExistsError):
        colbert.save(tmp_path / "m")


def test_decoder_backbone_gives_batch_independent_token_vectors(tiny_models):
    model = load_multivector_encoder(tiny_models["llama"], dimension=8, device="cpu", query_expansion={"length": 10})
    together = model.encode(QUERIES, role="query", batch_size=3)
    alone = TokenVectors.concat([model.encode([q], role="query") for q in QUERIES])
    assert together.lengths.tolist() == [10, 10, 10]  # no [MASK] in a decoder's vocabulary: EOS pads the query
    np.testing.assert_allclose(together.data, alone.data, atol=1e-5)


def test_maxsim_by_hand():
    q = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # one query, two tokens
    d = torch.tensor([[[0.6, 0.8], [1.0, 0.0], [0.0, 0.0]], [[-1.0, 0.0], [0.0, -1.0], [0.0, 0.0]]])
    d_mask = torch.tensor([[True, True, False], [True, True, False]])
    q_mask = torch.tensor([[True, True]])
    np.testing.assert_allclose(maxsim(q, q_mask, d, d_mask).numpy(), [[1.0 + 0.8, 0.0 + 0.0]], atol=1e-6)
    # all cosines negative: the real maximum (-0 here would be PyLate's zero-filled padding); halved by MeanMaxSim
    d2 = torch.tensor([[[-0.6, -0.8], [0.0, 0.0]]])
    np.testing.assert_allclose(maxsim(q, q_mask, d2, torch.tensor([[True, False]])).numpy(), [[-1.4]], atol=1e-6)
    np.testing.assert_allclose(maxsim(q, q_mask, d2, torch.tensor([[True, False]]), True).numpy(), [[-0.7]], atol=1e-6)
    empty = maxsim(q, q_mask, d2, torch.tensor([[False, False]]))
    assert empty.item() == -1e9


def test_maxsim_matrix_blocks_equal_one_block(monkeypatch):
    maxsim_module = importlib.import_module("gpte.models.multivector.maxsim")  # the package exports the function

    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 9, size=40)
    documents = TokenVectors.from_list([rng.normal(size=(n, 4)).astype(np.float32) for n in lengths])
    queries = TokenVectors.from_list([rng.normal(size=(n, 4)).astype(np.float32) for n in (3, 5)])
    whole = maxsim_matrix(queries, documents)
    monkeypatch.setattr(maxsim_module, "SCORE_BUDGET", 50)
    np.testing.assert_allclose(maxsim_matrix(queries, documents), whole, atol=1e-6)
    reference = [[sum((q @ d.T).max(axis=1)) for d in documents.to_list()] for q in queries.to_list()]
    np.testing.assert_allclose(whole, reference, atol=1e-5)


def test_token_vectors_take_slice_pad_save(tmp_path):
    vectors = TokenVectors.from_list([np.ones((2, 3)), np.zeros((0, 3)), 2 * np.ones((1, 3))])
    assert vectors.lengths.tolist() == [2, 0, 1] and vectors.dim == 3
    assert vectors.take([2, 0, 2]).lengths.tolist() == [1, 2, 1]
    np.testing.assert_array_equal(vectors[1:].data, [[2.0, 2.0, 2.0]])
    padded, mask = vectors.padded()
    assert padded.shape == (3, 2, 3) and mask.tolist() == [[True, True], [False, False], [True, False]]
    loaded = TokenVectors.load(vectors.save(tmp_path / "v"), mmap=True)
    np.testing.assert_array_equal(loaded.data, vectors.data)
    np.testing.assert_array_equal(loaded.offsets, vectors.offsets)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: TokenVectors(np.zeros((3, 2)), np.array([0, 2])), "offsets must run from 0 to 3"),
        (lambda: TokenVectors(np.zeros(3), np.array([0, 3])), "2-D (tokens, dim)"),
        (lambda: TokenVectors(np.zeros((3, 2)), np.array([0, 2, 1, 3])), "must not decrease"),
        (lambda: QueryExpansion(0), "length must be a positive integer"),
        (lambda: QueryExpansion(8, "max"), "unknown query expansion strategy 'max'; choose one of fixed, min"),
        (lambda: TokenVectors.load("/nonexistent"), "no tokens.npy"),
    ],
)
def test_bad_values_are_refused_with_their_reason(build, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message.replace("(", r"\(").replace(")", r"\)")):
        build()


def test_other_entry_points_refuse_a_multivector_folder_or_bad_options(colbert, tiny_models, tmp_path):
    folder = colbert.save(tmp_path / "m")
    with pytest.raises(ValueError, match="is a multi-vector model .*load_multivector_encoder"):
        load_model(folder)
    with pytest.raises(ValueError, match="16-d token vectors; dimension=32 applies to a new projection only"):
        load_multivector_encoder(folder, dimension=32)
    with pytest.raises(ValueError, match="unknown multi-vector similarity 'cosine'; choose one of maxsim, meanmaxsim"):
        load_multivector_encoder(tiny_models["bert"], similarity="cosine")
    with pytest.raises(ValueError, match="unknown role 'passage'"):
        colbert.encode(["x"], role="passage")
    with pytest.raises(TypeError, match=r"texts\[1\] is int"):
        colbert.encode(["x", 3])


def test_encode_cli_writes_token_vectors_and_resumes(colbert, tmp_path, capsys, monkeypatch):
    folder = colbert.save(tmp_path / "m")
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(DOCUMENTS[:1] + DOCUMENTS[2:] + QUERIES) + "\n", encoding="utf-8")
    lines = texts.read_text(encoding="utf-8").splitlines()
    output = tmp_path / "tokens"
    arguments = ["encode", str(texts), "-o", str(output), "--model", str(folder), "--chunk-size", "2", "--no-progress"]
    real = MultiVectorEncoder.encode_with_report
    calls = []

    def failing_third_chunk(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(MultiVectorEncoder, "encode_with_report", failing_third_chunk)
    assert main(arguments) != 0
    assert "interrupted; nothing was written under the output's final name" in capsys.readouterr().err
    assert not output.exists() and (tmp_path / ".tokens.partial").is_dir()
    monkeypatch.setattr(MultiVectorEncoder, "encode_with_report", real)
    assert main(arguments) == 0
    out = capsys.readouterr().out
    assert f"for {len(lines)} texts" in out and "2 chunks kept from an interrupted run" in out
    written = TokenVectors.load(output)
    expected = load_multivector_encoder(folder, device="cpu").encode(lines)
    np.testing.assert_allclose(written.data, expected.data, atol=1e-6)
    np.testing.assert_array_equal(written.offsets, expected.offsets)
    assert not (tmp_path / ".tokens.partial").exists()
    assert main(arguments) == 1 and "exists" in capsys.readouterr().err


def test_encode_cli_refuses_dense_options(colbert, tmp_path, capsys):
    texts = tmp_path / "t.txt"
    texts.write_text("a\n", encoding="utf-8")
    folder = colbert.save(tmp_path / "m")
    assert main(["encode", str(texts), "-o", str(tmp_path / "o"), "--model", str(folder), "--truncate-dim", "8"]) == 1
    assert "--truncate-dim apply to dense models, not --kind multivector" in capsys.readouterr().err


KEY = "secret-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def client(colbert):
    app = create_app({}, api_key=KEY, max_request_bytes=4096, max_inputs=8, multivector_models={"colbert": colbert})
    with TestClient(app) as test_client:
        yield test_client


def test_embed_multivector_gives_each_inputs_token_vectors(client, colbert):
    body = client.post(
        "/embed_multivector", json={"inputs": QUERIES, "prompt_name": "query", "truncate": True}, headers=AUTH
    ).json()
    expected = colbert.encode(QUERIES, role="query")
    assert [len(tokens) for tokens in body] == expected.lengths.tolist()
    for tokens, vectors in zip(body, expected.to_list()):
        np.testing.assert_allclose(np.asarray(tokens), vectors, atol=1e-5)
    single = client.post("/embed_multivector", json={"inputs": DOCUMENTS[0]}, headers=AUTH).json()
    np.testing.assert_allclose(np.asarray(single[0]), colbert.encode(DOCUMENTS[:1])[0], atol=1e-5)
    health = client.get("/health").json()
    assert health["multivector_models"] == ["colbert"]


@pytest.mark.parametrize(
    ("body", "headers", "status", "message"),
    [
        ({"inputs": QUERIES}, {}, 401, "API key"),
        ({"inputs": []}, AUTH, 400, "inputs is empty"),
        ({"inputs": ["ok", ""]}, AUTH, 400, "input 1 is an empty string"),
        ({"inputs": ["x"] * 9}, AUTH, 413, "the limit is 8"),
        ({"inputs": QUERIES, "model": "nope"}, AUTH, 404, "served multi-vector models: colbert"),
        ({"inputs": QUERIES, "prompt_name": "passage"}, AUTH, 400, "unknown role 'passage'"),
        ({"inputs": ["wing " * 40]}, AUTH, 413, "input 0 has 40 tokens; multi-vector model 'colbert' reads at most 15"),
        ({"inputs": ["wing " * 40], "prompt_name": "query"}, AUTH, 413, "reads at most 7"),
    ],
)
def test_embed_multivector_errors_name_the_problem(client, body, headers, status, message):
    response = client.post("/embed_multivector", json=body, headers=headers)
    assert response.status_code == status, response.text
    assert message in response.text


def test_long_input_is_cut_when_truncate_is_asked(client, colbert):
    body = client.post("/embed_multivector", json={"inputs": ["wing " * 40], "truncate": True}, headers=AUTH).json()
    assert len(body[0]) == 20 - 2  # document_length, less the marker's "[" and "]" (punctuation)


def test_serve_cli_names_the_multivector_models(colbert, tmp_path, monkeypatch, capsys):
    import uvicorn

    folder = colbert.save(tmp_path / "colbert")
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: None)
    assert main(["serve", "--multivector", str(folder)]) == 0
    assert "multi-vector models colbert" in capsys.readouterr().out
    shutil.rmtree(folder)
