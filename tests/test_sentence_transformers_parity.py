"""gpte reproduces sentence-transformers: same vectors for the packaged all-MiniLM-L6-v2 on the STS
Benchmark test sentences, the published Spearman, and models saved by either load in the other."""

import json

import numpy as np
import pytest
import torch
from conftest import SENTENCES, minilm_folder
from scipy.stats import spearmanr
from sentence_transformers import SentenceTransformer
from sentence_transformers import models as st_models

from gpte import Embedder

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def stsb_test(shared_data):
    rows = [json.loads(line) for line in (shared_data / "sts" / "stsb-en" / "test.jsonl").open()]
    return rows


@pytest.fixture(scope="module")
def minilm():
    return Embedder.load(device="cpu")


@pytest.fixture(scope="module")
def st_minilm():
    return SentenceTransformer(str(minilm_folder()), device="cpu")


def test_same_vectors_as_sentence_transformers_on_stsb(minilm, st_minilm, stsb_test):
    sentences = list(dict.fromkeys([r["sentence1"] for r in stsb_test] + [r["sentence2"] for r in stsb_test]))
    ours = minilm.encode(sentences, show_progress=False)
    theirs = st_minilm.encode(sentences, batch_size=32)
    assert np.abs(ours - theirs).max() <= 1e-5


def test_stsb_cosine_spearman_is_the_published_figure(minilm, stsb_test):
    first = minilm.encode([r["sentence1"] for r in stsb_test], show_progress=False)
    second = minilm.encode([r["sentence2"] for r in stsb_test], show_progress=False)
    cosine = (first * second).sum(axis=1)
    score = spearmanr(cosine, [r["score"] for r in stsb_test]).statistic * 100
    assert score == pytest.approx(82.03, abs=0.01)


def test_saved_model_reloads_identically_in_gpte_and_sentence_transformers(minilm, tmp_path, stsb_test):
    sentences = [r["sentence1"] for r in stsb_test[:200]] + SENTENCES
    reference = minilm.encode(sentences)
    folder = minilm.save(tmp_path / "minilm-copy")
    assert "| dimension | 384 |" in (folder / "README.md").read_text()  # the model card does not disturb loading
    np.testing.assert_allclose(Embedder.load(folder, device="cpu").encode(sentences), reference, atol=1e-6)
    np.testing.assert_allclose(SentenceTransformer(str(folder), device="cpu").encode(sentences), reference, atol=1e-6)


@pytest.mark.parametrize(
    "mode, include_prompt",
    [
        ("cls", True),
        ("max", True),
        ("weightedmean", True),
        ("lasttoken", True),
        ("mean", False),
        ("mean_sqrt_len_tokens", True),
    ],
)
def test_sentence_transformers_models_with_prompts_and_dense_layers_load_exactly(
    tiny_models, tmp_path, mode, include_prompt
):
    torch.manual_seed(0)
    transformer = st_models.Transformer(str(tiny_models["bert"]), max_seq_length=64)
    pooling = st_models.Pooling(32, pooling_mode=mode, include_prompt=include_prompt)
    dense = st_models.Dense(32, 16, activation_function=torch.nn.Tanh())
    st_model = SentenceTransformer(
        modules=[transformer, pooling, dense, st_models.Normalize()],
        prompts={"query": "query: ", "passage": "passage: "},
        device="cpu",
    )
    st_model.save(str(tmp_path / "st"))
    ours = Embedder.load(tmp_path / "st", device="cpu")
    assert ours.dimension == 16 and ours.max_seq_length == 64 and ours.normalize
    for role in ("query", "passage"):
        np.testing.assert_allclose(
            ours.encode(SENTENCES, role=role), st_model.encode(SENTENCES, prompt_name=role), atol=1e-6
        )
