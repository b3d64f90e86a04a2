"""Understanding embeddings: geometry and whitening, efficiency curves, an inversion-risk probe, bias tests,
interpretable views, plots and a report (``gpte analyze``).

    from gpte import Embedder
    from gpte.analysis import describe, fit_whitening, association_test
    model = Embedder.load()
    print(describe(model.encode(texts)).anisotropy)
"""

from gpte.errors import extra_needed

with extra_needed("analysis"):
    from gpte.analysis.analyze import SECTIONS, Analysis, AnalysisInputs
    from gpte.analysis.bias import association_test, counterfactual_gap
    from gpte.analysis.efficiency import matryoshka_curve, precision_curve, score_transforms
    from gpte.analysis.geometry import Geometry, anisotropy, describe, effective_rank, top_variance
    from gpte.analysis.interpret import explain_similarity, lm_head_tokens
    from gpte.analysis.inversion import InversionProbe, ProbeConfig, inversion_scores, run_probe, token_f1
    from gpte.analysis.whitening import Whitening, fit_whitening, whiten_model


__all__ = [
    "SECTIONS",
    "Analysis",
    "AnalysisInputs",
    "Geometry",
    "InversionProbe",
    "ProbeConfig",
    "Whitening",
    "anisotropy",
    "association_test",
    "counterfactual_gap",
    "describe",
    "effective_rank",
    "explain_similarity",
    "fit_whitening",
    "inversion_scores",
    "lm_head_tokens",
    "matryoshka_curve",
    "precision_curve",
    "run_probe",
    "score_transforms",
    "token_f1",
    "top_variance",
    "whiten_model",
]
