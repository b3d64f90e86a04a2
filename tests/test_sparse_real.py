"""Sparse models on the packaged real models: all-MiniLM-L6-v2 as SPLADE (a masked-LM head tied to its word
embeddings) saved by gpte loads in sentence-transformers with equal vectors on STS-B sentences, and PromptReps on
SmolLM2-135M-Instruct equals its definition computed by hand from the LLM's next-token logits."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sentence_transformers.sparse_encoder import SparseEncoder as STSparseEncoder

from gpte.models.sparse import load_sparse_encoder
from gpte.models.sparse.heads import _word_groups

pytestmark = pytest.mark.real


def sts_sentences(shared_data, n: int) -> list[str]:
    lines = (shared_data / "sts" / "stsb-en" / "test.jsonl").read_text(encoding="utf-8").splitlines()[:n]
    return [json.loads(line)["sentence1"] for line in lines]


def test_minilm_splade_saved_by_gpte_equals_sentence_transformers(shared_data, tmp_path):
    model = load_sparse_encoder(None, device="cpu")  # a new MLM head started from the word embeddings
    mlm = model.document_head.mlm
    assert mlm.get_output_embeddings().weight.data_ptr() == mlm.get_input_embeddings().weight.data_ptr()
    folder = model.save(tmp_path / "minilm-splade")
    texts = sts_sentences(shared_data, 64)
    own_words = {token for token, _ in model.decode(model.encode(texts[0]), top_k=10)}
    assert own_words & set(model.tokenizer.tokenize(texts[0]))  # the text's own words rank first, untrained
    peer = STSparseEncoder(str(folder), device="cpu")
    for role, encode in (("query", peer.encode_query), ("document", peer.encode_document)):
        expected = encode(texts, convert_to_tensor=True).to_dense().numpy()
        np.testing.assert_allclose(model.encode(texts, role=role).toarray(), expected, atol=1e-5)


def test_promptreps_on_smollm2_equals_its_definition(shared_data):
    model = load_sparse_encoder("promptreps")
    text = sts_sentences(shared_data, 1)[0]
    vector = model.encode(text, role="document", top_k=None)
    prompt = model.prompts.templates["document"].format(text).text
    tokenizer, llm = model.tokenizer, model.document_head.llm
    inputs = tokenizer(prompt, return_tensors="pt")
    with torch.inference_mode():
        logits = llm(**inputs).logits[0, -1, : model.vocab_size].float()
    weights = torch.log1p(torch.relu(logits)).numpy()
    groups = _word_groups(tokenizer)
    own = {groups[i] for i in tokenizer(text, add_special_tokens=False)["input_ids"]} - {0}
    weights[~np.isin(groups, list(own))] = 0.0
    top = np.argsort(-weights, kind="stable")[: model.document_head.top_k]
    expected = np.zeros_like(weights)
    expected[top] = weights[top]
    np.testing.assert_allclose(vector.toarray()[0], expected, atol=1e-4)
    decoded = [token for token, _ in model.decode(vector, top_k=5)]
    words = text.lower()
    assert all(tokenizer.convert_tokens_to_string([token]).strip().lower() in words for token in decoded)
