"""Real fine-tuning of all-MiniLM-L6-v2 on ../shared/data (2 CPU cores).

CoSENT, 1 epoch (batch 16, lr 5e-5) on the first 2,500 of STS Benchmark en train's 5,749 pairs (kept to
about 2 minutes for CI): STS-B test rises from 82.03 to >= 84.0 and SICK-R falls by at most 1 point
(measured: 84.30 and 77.22 vs 77.15; on all 5,749 pairs, by hand: 85.92 and 77.11). Matryoshka (slow, by
hand, all pairs): the model keeps >= 95% of its full-dimension STS-B score at 96 of 384 dimensions and
beats the untrained model truncated to 96.
"""

from __future__ import annotations

import pytest

from gpte import Embedder
from gpte.data.training import read_training_data
from gpte.evaluate import evaluate, load_task
from gpte.train.config import TrainingConfig
from gpte.train.losses import build_loss
from gpte.train.trainer import train

pytestmark = pytest.mark.real
UNTRAINED = {"stsb-en": 82.03, "sick-r": 77.15}  # ../shared/data reference figures, reproduced in test_evaluate_real
CI_PAIRS = 2_500  # of 5,749: the CI run trains on these (about 2 minutes); the full set is measured by hand
STS_SETTINGS = dict(epochs=1, batch_size=16, learning_rate=5e-5, save_steps=10_000, logging_steps=50)


class _Truncated:
    """The model's vectors cut to the first ``dims`` dimensions (then normalized by the cosine metric)."""

    def __init__(self, model: Embedder, dims: int) -> None:
        self.model, self.dims, self.name = model, dims, f"{model.name}@{dims}"

    def encode(self, texts, role=None, batch_size=32):
        return self.model.encode(texts, role=role, batch_size=batch_size, truncate_dim=self.dims)


def _scores(model, shared_data, names=("stsb-en", "sick-r")) -> dict[str, float]:
    run = evaluate(model, [load_task(shared_data / "sts" / name) for name in names])
    return {name: 100 * result["main_score_value"] for name, result in run.results.items()}


def _train_on_stsb(shared_data, tmp_path, loss_spec, limit: int | None = None) -> Embedder:
    model = Embedder.load(device="cpu")
    data = read_training_data(shared_data / "sts/stsb-en/train.jsonl", score_range=[0, 5], limit=limit)
    train(model, build_loss(loss_spec, model), [data], TrainingConfig(**STS_SETTINGS), tmp_path / "run", resume=False)
    return model


def test_cosent_fine_tuning_raises_stsb_and_keeps_sick(shared_data, tmp_path):
    scores = _scores(_train_on_stsb(shared_data, tmp_path, "cosent", limit=CI_PAIRS), shared_data)
    print(f"CoSENT 1 epoch on the first {CI_PAIRS} pairs: {scores}")
    assert scores["stsb-en"] >= 84.0
    assert scores["sick-r"] >= UNTRAINED["sick-r"] - 1.0


@pytest.mark.slow
def test_matryoshka_keeps_95_percent_at_a_quarter_of_the_dimensions(shared_data, tmp_path):
    model = _train_on_stsb(shared_data, tmp_path, {"name": "cosent", "matryoshka": {"dims": [384, 192, 96, 48]}})
    full = _scores(model, shared_data, ["stsb-en"])["stsb-en"]
    quarter = _scores(_Truncated(model, 96), shared_data, ["stsb-en"])["stsb-en"]
    untrained_quarter = _scores(_Truncated(Embedder.load(device="cpu"), 96), shared_data, ["stsb-en"])["stsb-en"]
    print(f"Matryoshka: full {full:.2f}, 96 dims {quarter:.2f}, untrained at 96 dims {untrained_quarter:.2f}")
    assert quarter >= 0.95 * full
    assert quarter > untrained_quarter
