"""The fast backends on all-MiniLM-L6-v2 and ../shared/data: ONNX fp32 gives PyTorch's vectors; int8 and
bf16 cost at most 0.5 points of STS Benchmark en test Spearman and Cranfield nDCG@10 (figures printed:
run with -s to see them; they are recorded in the README). The Cranfield cases take minutes (bf16 is
emulated on CPUs without avx512_bf16) and are marked ``slow``: ``pytest -m slow -s tests/test_runtime_real.py``.
int8 uses per-channel weight scales with a 7-bit range (see ``INT8_SETTINGS``): per-tensor scales cost 1.38
Cranfield points, per-channel full-range ones on the fused graph 0.98, the settings in use 0.07."""

import shutil

import numpy as np
import pytest
from conftest import minilm_folder

from gpte import Embedder
from gpte.evaluate import discover_tasks, evaluate, select_tasks
from gpte.models.backends import cpu_has_native_bf16

pytestmark = pytest.mark.real

FLOAT32 = {"sts/stsb-en": 82.03, "retrieval/cranfield": 38.17}  # PyTorch float32 = mteb's figures (test_evaluate_real)


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    return shutil.copytree(minilm_folder(), tmp_path_factory.mktemp("minilm") / "model")


@pytest.fixture(scope="module")
def stsb_sentences(shared_data):
    import json

    rows = [json.loads(line) for line in (shared_data / "sts" / "stsb-en" / "test.jsonl").open()]
    return list(dict.fromkeys([r["sentence1"] for r in rows] + [r["sentence2"] for r in rows]))


def test_onnx_fp32_gives_pytorch_vectors(model_folder, stsb_sentences):
    reference = Embedder.load(model_folder, device="cpu").encode(stsb_sentences)
    onnx = Embedder.load(model_folder, device="cpu", backend="onnx").encode(stsb_sentences)
    difference, cosine = np.abs(onnx - reference).max(), (onnx * reference).sum(axis=1).min()
    print(
        f"\nONNX fp32 vs PyTorch fp32 on {len(stsb_sentences)} STS-B sentences: max |diff| {difference:.1e}, min cosine {cosine:.7f}"
    )
    assert difference <= 1e-4 and cosine >= 0.99999


CASES = [
    pytest.param("onnx-int8", "sts/stsb-en"),
    pytest.param("bf16", "sts/stsb-en", marks=pytest.mark.slow),  # emulated here (no avx512_bf16): 90 s on 2 cores
    pytest.param("onnx-int8", "retrieval/cranfield", marks=pytest.mark.slow),
    pytest.param("bf16", "retrieval/cranfield", marks=pytest.mark.slow),  # emulated bf16: minutes on 2 cores
]


@pytest.mark.parametrize("variant, task", CASES)
def test_reduced_precision_costs_at_most_half_a_point(model_folder, shared_data, variant, task):
    if variant == "bf16":  # the bf16 backend where the CPU has it; else the same bf16 weights, emulated
        model = Embedder.load(
            model_folder, device="cpu", **({"backend": "bf16"} if cpu_has_native_bf16() else {"dtype": "bfloat16"})
        )
    else:
        model = Embedder.load(model_folder, device="cpu", backend=variant)
    run = evaluate(model, select_tasks(discover_tasks(shared_data), [task]))
    assert not run.failures
    score = 100 * run.results[task]["main_score_value"]
    print(f"\n{variant}: {task} {score:.2f} (float32 {FLOAT32[task]:.2f}, change {score - FLOAT32[task]:+.2f})")
    assert abs(score - FLOAT32[task]) <= 0.5
