"""CSR (a k-sparse autoencoder on a dense embedder) as a sparse head: codes equal to sentence-transformers'
SparseEncoder on its own CSR folders (mean pooling; Normalize + layer-normalised autoencoder; pooling without the
prompt), folders written by gpte load in sentence-transformers with equal vectors, the training outputs and
CSRLoss equal sentence-transformers' (terms, gradients, dead-latent counts), new autoencoders on dense models,
and bad options named."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from sentence_transformers.base.modules import Transformer
from sentence_transformers.sentence_transformer.modules import Normalize, Pooling
from sentence_transformers.sparse_encoder import SparseEncoder as STSparseEncoder
from sentence_transformers.sparse_encoder import losses as st_losses
from sentence_transformers.sparse_encoder.modules.sparse_auto_encoder import SparseAutoEncoder as STAutoEncoder

from gpte import Embedder
from gpte.errors import ModelLoadError
from gpte.models.sparse.csr import (
    CSRHead,
    CSRTextTokenizer,
    SparseAutoEncoder,
    csr_from_dense,
    is_csr_modules,
    read_csr,
    write_csr,
)
from gpte.models.sparse.encoder import SparseEncoder
from gpte.models.st_format import read_json, write_json
from gpte.models.tokenization import TextTokenizer
from gpte.train.losses import TrainingBatch
from gpte.train.losses.sparse import CSRLoss

HIDDEN, K, K_AUX = 128, 8, 32
TEXTS = [
    "How do wings stall at a high angle of attack?",
    "hello world",
    "The quick brown fox jumps over the lazy dog near the river bank at dawn.",
    "hello world",
    "",
]
COLUMNS = [
    ["what is a stall", "hello world", "fox and dog", "river at dawn"],
    ["a wing stalls at a high angle", "hi there world", "the quick brown fox", "a bank of the river"],
    ["cats sleep all day", "goodbye moon", "slow green turtle", ""],
]
VARIANTS = {  # pooling options, a Normalize module, the autoencoder's layer normalisation
    "mean": ({}, False, False),
    "normalized": ({}, True, True),
    "prompt-excluded": ({"include_prompt": False}, False, False),
}


def st_csr(bert, variant: str, seed: int = 0) -> STSparseEncoder:
    """sentence-transformers' CSR model around the tiny BERT: Transformer, Pooling(mean) (, Normalize), then a
    seeded SparseAutoEncoder with random biases; a query prompt."""
    pooling, normalize, layer_norm = VARIANTS[variant]
    torch.manual_seed(seed)
    transformer = Transformer(str(bert))
    autoencoder = STAutoEncoder(input_dim=32, hidden_dim=HIDDEN, k=K, k_aux=K_AUX, normalize=layer_norm)
    with torch.no_grad():
        torch.nn.init.normal_(autoencoder.pre_bias, std=0.1)
        torch.nn.init.normal_(autoencoder.latent_bias, std=0.1)
    modules = [transformer, Pooling(32, "mean", **pooling), *([Normalize()] if normalize else []), autoencoder]
    return STSparseEncoder(modules=modules, prompts={"query": "query: "}, device="cpu")


@pytest.fixture(scope="module")
def st_folders(tiny_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("st-csr")
    for variant in VARIANTS:
        st_csr(tiny_models["bert"], variant).save(str(root / variant))
    return root


def ours_from(folder) -> SparseEncoder:
    """The SparseEncoder gpte's loader will build for a CSR folder (read_csr, the folder's prompts)."""
    head, tokenizer, limit = read_csr(folder)
    prompts = {
        name: value
        for name, value in read_json(folder / "config_sentence_transformers.json")["prompts"].items()
        if value
    }
    return SparseEncoder(head, tokenizer, limit, prompts=prompts, name=str(folder))


def st_dense(model: STSparseEncoder, texts: list[str], role: str) -> np.ndarray:
    encode = model.encode_query if role == "query" else model.encode_document
    return encode(texts, convert_to_tensor=True).to_dense().numpy()


# ---------------------------------------------------------------- inference


NO_PROMPT_CLS = pytest.mark.xfail(
    strict=True,
    reason="gpte's pooler with include_prompt=False drops the leading CLS even when no prompt is in use; "
    "sentence-transformers pools it then (the Embedder differs the same way)",
)


@pytest.mark.parametrize(
    "variant, role",
    [
        ("mean", "query"),
        ("mean", "document"),
        ("normalized", "query"),
        ("normalized", "document"),
        ("prompt-excluded", "query"),
        pytest.param("prompt-excluded", "document", marks=NO_PROMPT_CLS),
    ],
)
def test_codes_equal_sentence_transformers(st_folders, variant, role):
    folder = st_folders / variant
    ours = ours_from(folder)
    assert ours.architecture == "csr" and ours.vocab_size == ours.dimension == HIDDEN
    assert ours.info()["heads"]["document"]["top_k"] == K
    expected = st_dense(STSparseEncoder(str(folder), device="cpu"), TEXTS, role)
    vectors = ours.encode(TEXTS, role=role)
    assert vectors.dtype == np.float32 and vectors.shape == expected.shape == (len(TEXTS), HIDDEN)
    np.testing.assert_allclose(vectors.toarray(), expected, atol=1e-5)
    assert (np.diff(vectors.indptr) <= K).all() and (vectors.data > 0).all()


def test_head_tokenizer_matches_the_encoders_and_the_pooler(st_folders):
    ours = ours_from(st_folders / "prompt-excluded")
    head = ours.document_head
    assert head.needs_segments  # pooling without the prompt reads token segments
    own = head.text_tokenizer(ours.max_seq_length)
    assert isinstance(own, CSRTextTokenizer) and own.max_length == ours.max_seq_length
    template = ours.prompts.resolve(None, "query")
    plain = TextTokenizer(ours.tokenizer, ours.max_seq_length).tokenize(TEXTS, template, with_segments=True)
    tokenized = own.tokenize(TEXTS, template)
    assert tokenized.input_ids == plain.input_ids and tokenized.segments == plain.segments
    with torch.inference_mode():
        codes = head(own.pad(tokenized, list(range(len(TEXTS)))))
    np.testing.assert_allclose(codes.numpy(), ours.encode(TEXTS, role="query").toarray(), atol=1e-6)
    assert head.dimension_names([3, 70]) == ["latent_3", "latent_70"]


def test_top_k_selects_latents_like_max_active_dims(st_folders):
    folder = st_folders / "mean"
    ours, peer = ours_from(folder), STSparseEncoder(str(folder), device="cpu")
    batch = ours.tokenize(TEXTS)
    for top_k in (3, 20):  # fewer and more latents than k: sentence-transformers' max_active_dims
        with torch.inference_mode():
            codes = ours.document_head(batch, top_k)
        expected = peer.encode_document(TEXTS, max_active_dims=top_k, convert_to_tensor=True).to_dense()
        np.testing.assert_allclose(codes.numpy(), expected.numpy(), atol=1e-5)
        assert ((codes > 0).sum(dim=1) <= top_k).all()


# ---------------------------------------------------------------- folders


@pytest.mark.parametrize("variant", ["mean", "normalized"])
def test_written_folder_loads_in_sentence_transformers_with_equal_vectors(st_folders, variant, tmp_path):
    ours = ours_from(st_folders / variant)
    ours.max_seq_length = 64
    saved = write_csr(ours, tmp_path / "model")
    modules = read_json(saved / "modules.json")
    assert is_csr_modules(modules) and modules[-1]["path"] == f"{len(modules) - 1}_SparseAutoEncoder"
    config = read_json(saved / "config_sentence_transformers.json")
    assert (config["model_type"], config["max_active_dims"], config["prompts"]["query"]) == (
        "SparseEncoder",
        K,
        "query: ",
    )
    assert read_json(saved / modules[-1]["path"] / "config.json") == ours.document_head.autoencoder.config()
    peer = STSparseEncoder(str(saved), device="cpu")
    assert peer.max_seq_length == 64
    for role in ("query", "document"):
        np.testing.assert_allclose(ours.encode(TEXTS, role=role).toarray(), st_dense(peer, TEXTS, role), atol=1e-5)
    again = ours_from(saved)
    again.max_seq_length = 64
    assert again.fingerprint == ours.fingerprint


def test_head_alone_is_written_with_default_settings(st_folders, tmp_path):
    head, _, _ = read_csr(st_folders / "mean")
    saved = write_csr(head, tmp_path / "head")
    config = read_json(saved / "config_sentence_transformers.json")
    assert config["max_active_dims"] == K and config["prompts"] == {"query": "", "document": ""}
    peer = STSparseEncoder(str(saved), device="cpu")
    reference = STSparseEncoder(str(st_folders / "mean"), device="cpu")
    np.testing.assert_allclose(st_dense(peer, TEXTS, "document"), st_dense(reference, TEXTS, "document"), atol=1e-6)


# ---------------------------------------------------------------- training


class _Trained(torch.nn.Module):
    """The training model gpte's CSRLoss reads: the SparseEncoder's codes and its head's autoencoder outputs."""

    def __init__(self, encoder: SparseEncoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, batch):
        return self.encoder(batch)

    def autoencoder_outputs(self, batch):
        return self.encoder.head_for(batch.role).autoencoder_outputs(batch)


def _training_pair(folder):
    """Ours and sentence-transformers' model from ``folder`` in training mode (transformers without dropout),
    the second half of the latents dead."""
    ours, theirs = ours_from(folder), STSparseEncoder(str(folder), device="cpu")
    ours.train(), theirs.train()
    ours.document_head.embedder.eval(), theirs[0].eval()
    for autoencoder in (ours.document_head.autoencoder, theirs[-1]):
        autoencoder.stats_last_nonzero[HIDDEN // 2 :] = 100
    return ours, theirs


@pytest.mark.parametrize("variant", ["mean", "normalized"])
def test_autoencoder_outputs_equal_sentence_transformers_training_features(st_folders, variant):
    ours, theirs = _training_pair(st_folders / variant)
    outputs = ours.document_head.autoencoder_outputs(ours.tokenize(COLUMNS[0]))
    features = theirs(theirs.preprocess(COLUMNS[0]))
    for key, value in outputs.items():
        assert (value is None) == (features[key] is None), key
        if value is not None:
            torch.testing.assert_close(value, features[key], rtol=1e-5, atol=1e-6, msg=key)
    assert outputs["decoded_embedding_aux"] is not None
    assert torch.equal(ours.document_head.autoencoder.stats_last_nonzero, theirs[-1].stats_last_nonzero)


@pytest.mark.parametrize("beta, gamma", [(0.1, 1.0), (1.0, 0.5)])
def test_csr_loss_equals_sentence_transformers(st_folders, beta, gamma):
    ours, theirs = _training_pair(st_folders / "normalized")
    model = _Trained(ours)
    loss = CSRLoss(model, beta=beta, gamma=gamma)
    st_loss = st_losses.CSRLoss(theirs, beta=beta, gamma=gamma)
    batch = TrainingBatch(COLUMNS, [ours.tokenize(column) for column in COLUMNS])
    st_features = [theirs.preprocess(column) for column in COLUMNS]

    terms = loss.terms([model.autoencoder_outputs(features) for features in batch.features], batch)
    expected = st_loss(st_features, None)
    assert set(terms) == set(expected)
    for key in terms:
        assert terms[key].item() == pytest.approx(expected[key].item(), rel=1e-6, abs=1e-9), key
    total, st_total = sum(terms.values()), torch.stack(list(expected.values())).sum()
    ours_params = dict(ours.document_head.autoencoder.named_parameters()) | {
        f"bert.{name}": value for name, value in ours.document_head.embedder.backbone.model.named_parameters()
    }
    st_params = dict(theirs[-1].named_parameters()) | {
        f"bert.{name}": value for name, value in theirs[0].auto_model.named_parameters()
    }
    names = [name for name in ours_params if name in st_params]
    assert {"encoder.weight", "pre_bias", "latent_bias", "bert.embeddings.word_embeddings.weight"} <= set(names)
    grads = torch.autograd.grad(total, [ours_params[name] for name in names], allow_unused=True)
    st_grads = torch.autograd.grad(st_total, [st_params[name] for name in names], allow_unused=True)
    for name, mine, other in zip(names, grads, st_grads):
        assert (mine is None) == (other is None), name
        if mine is not None:
            torch.testing.assert_close(mine, other, rtol=1e-4, atol=1e-6, msg=name)
    # a second step sees the dead-latent counts the first left: still equal
    assert torch.equal(ours.document_head.autoencoder.stats_last_nonzero, theirs[-1].stats_last_nonzero)
    again = loss(batch)
    assert again.item() == pytest.approx(torch.stack(list(st_loss(st_features, None).values())).sum().item(), rel=1e-6)


# ---------------------------------------------------------------- new autoencoders


def test_csr_from_dense_uses_sentence_transformers_defaults_and_initialisation(tiny_models):
    embedder = Embedder.load(tiny_models["bert"], pooling="mean", device="cpu")
    torch.manual_seed(3)
    encoder = csr_from_dense(embedder)
    torch.manual_seed(3)
    reference = STAutoEncoder(input_dim=32, hidden_dim=4 * 32, k=32 // 4, k_aux=32 // 2)
    autoencoder = encoder.document_head.autoencoder
    assert (autoencoder.hidden_dim, autoencoder.k, autoencoder.k_aux) == (128, 8, 16)
    for name, value in reference.state_dict().items():
        assert torch.equal(autoencoder.state_dict()[name], value), name
    assert encoder.vocab_size == 128 and encoder.encode(TEXTS).shape == (len(TEXTS), 128)
    assert (np.diff(encoder.encode(TEXTS).indptr) <= 8).all()
    small = csr_from_dense(tiny_models["bert"], hidden_dim=64, k=4, k_aux=8, device="cpu")  # a bare BertModel folder
    assert small.document_head.embedder.pooler.name == "mean" and small.vocab_size == 64
    with pytest.raises(ValueError, match=r"k must be an integer in 1\.\.128, got 256"):
        csr_from_dense(tiny_models["bert"], device="cpu")  # sentence-transformers' bare-transformer k=256


# ---------------------------------------------------------------- hostile


@pytest.mark.parametrize(
    "options, message",
    [
        ({"k": 17}, r"k must be an integer in 1\.\.16, got 17"),
        ({"k": 0}, r"k must be an integer in 1\.\.16, got 0"),
        ({"k": 2.5}, r"k must be an integer in 1\.\.16, got 2\.5"),
        ({"k": True}, r"k must be an integer in 1\.\.16, got True"),
        ({"k_aux": -1}, r"k_aux must be an integer in >= 0, got -1"),
        ({"hidden_dim": 0, "k": 1}, r"hidden_dim must be an integer in >= 1, got 0"),
        ({"dead_threshold": -1}, r"dead_threshold must be an integer in >= 0, got -1"),
        ({"normalize": "yes"}, r"normalize must be True or False, got 'yes'"),
    ],
)
def test_bad_autoencoder_options_are_refused(options, message):
    settings = {"input_dim": 8, "hidden_dim": 16, "k": 2, "k_aux": 4} | options
    with pytest.raises(ValueError, match=message):
        SparseAutoEncoder(**settings)


@pytest.fixture
def copied(st_folders, tmp_path):
    """A copy of the plain CSR folder, to break."""
    folder = tmp_path / "copy"
    shutil.copytree(st_folders / "mean", folder)
    return folder


def test_bad_models_and_folders_are_named(st_folders, splade, copied, tmp_path):
    head, _, _ = read_csr(st_folders / "mean")
    with pytest.raises(ValueError, match="the autoencoder reads 16-dimensional vectors, the embedder makes 32"):
        CSRHead(head.embedder, SparseAutoEncoder(16, 64, k=4, k_aux=8))
    with pytest.raises(ValueError, match=r"the top-4k reconstruction needs 4 x k <= hidden_dim; k=5, hidden_dim=16"):
        SparseAutoEncoder(8, 16, k=5, k_aux=0).outputs(torch.randn(2, 8))
    loadable = SparseAutoEncoder(8, 16, k=2)  # sentence-transformers' default k_aux=512: encodes, cannot train
    with torch.inference_mode():
        assert (loadable(torch.randn(2, 8))["sentence_embedding"] > 0).sum() <= 4
    with pytest.raises(ValueError, match=r"the auxiliary reconstruction needs k_aux <= hidden_dim; k_aux=512, hidden"):
        loadable.outputs(torch.randn(2, 8))
    with pytest.raises(ValueError, match="write_csr writes a CSR model, got SpladeHead"):
        write_csr(splade, tmp_path / "splade")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(FileExistsError, match="exists and is not empty"):
        write_csr(head, tmp_path / "full")

    config = read_json(copied / "2_SparseAutoEncoder" / "config.json")
    write_json(copied / "2_SparseAutoEncoder" / "config.json", config | {"k": HIDDEN + 1})
    with pytest.raises(ModelLoadError, match=r"config.json: k must be an integer in 1\.\.128, got 129"):
        read_csr(copied)
    write_json(copied / "2_SparseAutoEncoder" / "config.json", config | {"hidden_dim": 64})
    with pytest.raises(ModelLoadError, match="the SparseAutoEncoder weights do not fit its config"):
        read_csr(copied)
    modules = read_json(copied / "modules.json")
    write_json(copied / "modules.json", modules[:2])
    assert not is_csr_modules(modules[:2]) and is_csr_modules(modules)
    with pytest.raises(ModelLoadError, match=r"lists modules \['Transformer', 'Pooling'\]; gpte reads a CSR model"):
        read_csr(copied)


# ---------------------------------------------------------------- through load_sparse_encoder / SparseEncoder.save

WIRED = pytest.mark.skipif(
    not hasattr(SparseEncoder, "autoencoder_outputs"),
    reason="CSR is not wired into SparseEncoder / load_sparse_encoder yet",
)


@WIRED
def test_csr_folders_load_and_save_through_the_sparse_encoder(st_folders, tmp_path):
    from gpte.models.sparse import load_sparse_encoder
    from gpte.train.losses import build_loss

    folder = st_folders / "normalized"
    ours, peer = load_sparse_encoder(folder, device="cpu"), STSparseEncoder(str(folder), device="cpu")
    assert ours.architecture == "csr" and ours.top_k == K
    for role in ("query", "document"):
        np.testing.assert_allclose(ours.encode(TEXTS, role=role).toarray(), st_dense(peer, TEXTS, role), atol=1e-5)
    wider = ours.encode(TEXTS, top_k=20)  # more latents than k, as max_active_dims=20
    expected = peer.encode_document(TEXTS, max_active_dims=20, convert_to_tensor=True).to_dense().numpy()
    np.testing.assert_allclose(wider.toarray(), expected, atol=1e-5)
    assert all(name.startswith("latent_") for name, _ in ours.decode(ours.encode("hello world")))
    saved = ours.save(tmp_path / "model")
    assert (saved / "README.md").is_file()
    assert load_sparse_encoder(saved, device="cpu").fingerprint == ours.fingerprint
    np.testing.assert_allclose(
        ours.encode(TEXTS).toarray(), st_dense(STSparseEncoder(str(saved), device="cpu"), TEXTS, "document"), atol=1e-5
    )
    assert build_loss("csr", ours).name == "csr(infonce)"
