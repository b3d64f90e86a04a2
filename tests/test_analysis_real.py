"""gpte.analysis on all-MiniLM-L6-v2 and ../shared/data: whitening on STS Benchmark, the WEAT association
and its shuffled control, and the inversion probe (STS-B train sentences -> SICK-R sentences) against random
vectors. References were measured on the 2-core project machine (see README, Understanding embeddings)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from gpte.analysis import bias
from gpte.analysis.geometry import anisotropy
from gpte.analysis.interpret import lm_head_tokens
from gpte.analysis.inversion import ProbeConfig, run_probe
from gpte.analysis.texts import task_texts
from gpte.analysis.whitening import add_whitening, fit_whitening
from gpte.evaluate import evaluate, load_task
from gpte.models.embedder import Embedder

pytestmark = pytest.mark.real
REFERENCE_WHITENED_STS = 79.88  # STS-B test after whitening fitted on STS-B dev (82.03 before)
REFERENCE_SHORT_MARGIN = 0.08  # 2-epoch probe, 500 SICK-R sentences: token F1 33.71 vs 18.56 from random vectors


@pytest.fixture(scope="module")
def minilm() -> Embedder:
    return Embedder.load(device="cpu")


def test_whitening_on_stsb_dev_zeroes_mean_cosine_and_its_sts_effect(minilm, shared_data):
    stsb = load_task(shared_data / "sts" / "stsb-en", "stsb-en")
    corpus = task_texts(stsb, "dev")
    raw = minilm.encode(corpus, normalize=False, batch_size=64)
    whitening = fit_whitening(raw)
    before, after = anisotropy(raw), anisotropy(whitening.apply(raw))
    model = add_whitening(Embedder.load(device="cpu"), whitening)
    score = evaluate(model, [stsb]).results["stsb-en"]["main_score_value"]
    print(
        f"\nSTS-B dev ({len(corpus)} sentences): mean cosine {before:.4f} -> {after:.6f}; STS-B test 82.03 -> {100 * score:.2f}"
    )
    assert before == pytest.approx(0.0176, abs=0.002)
    assert abs(after) < 1e-3
    assert 100 * score == pytest.approx(REFERENCE_WHITENED_STS, abs=0.2)


def test_weat1_association_is_found_and_the_shuffled_control_is_not(minilm):
    found = bias.association_test(minilm.encode, "weat1-flowers-insects")
    control = bias.association_test(minilm.encode, "weat1-flowers-insects", shuffle_targets=True)
    print(
        f"\nWEAT1: d = {found.effect_size:.4f}, p = {found.p_value:.4f}; control d = {control.effect_size:.4f}, p = {control.p_value:.4f}"
    )
    assert found.effect_size == pytest.approx(1.3349, abs=0.01) and found.p_value < 0.05
    assert abs(control.effect_size) < 0.5 and control.p_value > 0.05


def _probe(minilm, shared_data, config: ProbeConfig, test_size: int):
    train = task_texts(load_task(shared_data / "sts" / "stsb-en"), "train")
    test = task_texts(load_task(shared_data / "sts" / "sick-r"))
    test = [test[i] for i in sorted(np.random.default_rng(0).permutation(len(test))[:test_size])]
    started = time.perf_counter()
    run = run_probe(
        lambda texts: minilm.encode(texts, batch_size=64),
        train,
        test,
        minilm.backbone.tokenizer,
        config,
        show_progress=False,
    )
    seconds = time.perf_counter() - started
    print(
        f"\nprobe ({config.epochs} epochs, {len(train)} -> {len(test)} sentences, {seconds:.0f} s): token F1 "
        f"{100 * run.held_out.token_f1:.2f} vs random {100 * run.random_baseline.token_f1:.2f}; "
        f"BLEU {100 * run.held_out.bleu:.2f} vs {100 * run.random_baseline.bleu:.2f}"
    )
    return run, seconds


@pytest.mark.slow  # 3.5 min on 2 cores; the probe's formulas and memorization are checked fast in test_analysis
def test_short_inversion_probe_recovers_more_than_from_random_vectors(minilm, shared_data):
    run, _ = _probe(minilm, shared_data, ProbeConfig(epochs=2), test_size=500)
    assert run.held_out.token_f1 > run.random_baseline.token_f1 + REFERENCE_SHORT_MARGIN


@pytest.mark.slow
def test_full_inversion_probe_under_15_minutes(minilm, shared_data):
    run, seconds = _probe(minilm, shared_data, ProbeConfig(), test_size=1000)
    assert seconds < 15 * 60
    assert run.held_out.token_f1 == pytest.approx(0.415, abs=0.03)
    assert run.random_baseline.token_f1 == pytest.approx(0.152, abs=0.03)


def test_lm_head_tokens_of_smollm2_prompteol_embeddings_name_the_subject():
    pytest.importorskip("gguf")
    model = Embedder.load("smollm2-135m-instruct", extraction="prompteol", device="cpu")
    tops = lm_head_tokens(model, ["A man is playing a guitar.", "My cat sleeps all day."], k=5)
    print("\n" + "\n".join(str(top) for top in tops))
    assert "man" in [token.strip() for token, _ in tops[0]]
    assert "cat" in [token.strip() for token, _ in tops[1]]
