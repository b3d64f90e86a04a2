"""A cross-encoder trained by gpte from all-MiniLM-L6-v2's transformer (the packaged model) on STS-B en train pairs
(../shared/data) scores like sentence-transformers' CrossEncoder on the saved folder, and training helps.

The full measurements (STS-B + TREC QA, Cranfield's query split, SmolLM2) are ``benchmarks/reranker_quality.py``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import spearmanr

from gpte.models.cross_encoder import CrossEncoder
from gpte.train.recipe import load_recipe, run_recipe

pytestmark = pytest.mark.real
TRAIN_PAIRS = 480  # 30 steps of 16: about a minute on 2 cores


def test_a_gpte_trained_minilm_cross_encoder_scores_like_sentence_transformers(shared_data, tmp_path):
    from sentence_transformers import CrossEncoder as STCrossEncoder

    stsb = shared_data / "sts" / "stsb-en"
    recipe = tmp_path / "recipe.yaml"
    data = {
        "path": str(stsb / "train.jsonl"),
        "columns": ["sentence1", "sentence2"],
        "score": "score",
        "score_range": [0, 5],
        "limit": TRAIN_PAIRS,
    }
    recipe.write_text(
        f"kind: reranker\noutput: {tmp_path / 'runs'}\nstages:\n  - name: sts\n    data: [{json.dumps(data)}]\n"
        "    loss: bce\n    training: {epochs: 1, batch_size: 16, learning_rate: 5.0e-5, no_duplicates: false}\n"
    )
    (folder,) = run_recipe(load_recipe(recipe))
    test = [json.loads(line) for line in (stsb / "test.jsonl").open()][:300]
    pairs = [(row["sentence1"], row["sentence2"]) for row in test]
    ours = CrossEncoder.load(folder, device="cpu").predict(pairs)
    theirs = STCrossEncoder(str(folder), device="cpu").predict(pairs)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    spearman = spearmanr(ours, [row["score"] for row in test]).statistic
    print(f"\nSTS-B en test (first 300 pairs) Spearman after {TRAIN_PAIRS} training pairs: {100 * spearman:.2f}")
    assert spearman > 0.5  # a fresh head scores at random (about 0); 30 steps already rank most pairs
