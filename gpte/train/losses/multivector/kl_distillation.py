"""ColBERT KL distillation (sentence-transformers' MultiVectorDistillKLDivLoss; ColBERTv2's distillation).

Rows (query, document_1..document_N), N >= 2, with the teacher's scores for the N documents as scores (rows, N).
With s the student's MaxSim scores of each query against its own row's documents, T the (student) temperature and
T_t the teacher's,

    L = T^2 * 1/n sum_i KL( softmax(t_i / T_t) || softmax(s_i / T) )

(``batchmean``; the T^2 keeps gradient sizes comparable across temperatures, Hinton et al. 2015). The student's
scores are used as they are: no per-row min-max normalisation (PyLate's ``Distillation`` default), as in
sentence-transformers. Reference: Santhanam et al. 2022, "ColBERTv2: Effective and efficient retrieval via
lightweight late interaction".
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from gpte.train.losses.base import TrainingBatch, check_positive
from gpte.train.losses.multivector.base import MultiVectorLoss
from gpte.train.losses.multivector.tokens import TokenColumn


class ColBERTKLDistillationLoss(MultiVectorLoss):
    """KL from the teacher's candidate distribution to the student's; see the module docstring.

    Args:
        model: the multi-vector model.
        temperature: T, the student's temperature.
        teacher_temperature: T_t (None: ``temperature``, as sentence-transformers' ``temperature`` sets both).
        similarity: ``maxsim`` or ``meanmaxsim`` (None: the model's).
    """

    name = "colbert_kl_distillation"
    min_columns = 3
    needs_scores = True

    def __init__(
        self,
        model: nn.Module,
        temperature: float = 1.0,
        teacher_temperature: float | None = None,
        similarity: str | None = None,
    ) -> None:
        super().__init__(model, similarity)
        check_positive("temperature", temperature)
        if teacher_temperature is not None:
            check_positive("teacher_temperature", teacher_temperature)
        self.temperature = float(temperature)
        self.teacher_temperature = float(teacher_temperature if teacher_temperature is not None else temperature)

    def from_columns(self, embeddings: list[TokenColumn], batch: TrainingBatch | None) -> Tensor:
        student = self.candidate_scores(embeddings)
        teacher = batch.scores
        if tuple(teacher.shape) != tuple(student.shape):
            raise ValueError(
                f"{self.name}: each row needs one teacher score per document ({student.shape[1]}), i.e. scores of "
                f"shape {tuple(student.shape)}; got {tuple(teacher.shape)}"
            )
        loss = F.kl_div(
            F.log_softmax(student / self.temperature, dim=-1),
            F.log_softmax(teacher.detach().to(student.dtype) / self.teacher_temperature, dim=-1),
            reduction="batchmean",
            log_target=True,
        )
        return loss * self.temperature**2
