"""PNG figures: a 2-D map of labelled vectors, score curves and bars, similarity histograms.

Figures are drawn with matplotlib's object API (a ``Figure`` on its own Agg canvas): no pyplot state and no
backend switch, so using this module changes nothing for the caller's own plots.

Each ``*_figure`` function (and ``similarity_histogram``) returns a ``Figure`` whose title names the model, whose
axis labels name the measure, and whose legend lies beside the axes (never over a point or a bar); ``save`` writes
one as PNG through a temporary name (no half-written figure under the final name). 2-D maps use PCA
(scikit-learn) or UMAP (``umap-learn``, optional: ``pip install 'gpte[umap]'``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from gpte.atomic import atomic_path
from gpte.evaluate.report import grouped_bars

PROJECTIONS = ("pca", "umap")
MAX_LEGEND = 12  # labels beyond this many are drawn without a legend entry


def project_2d(vectors: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """(n, d) -> (n, 2) by PCA or UMAP.

    Raises:
        ValueError: an unknown method. ImportError: umap without umap-learn installed (the message says so).
    """
    if method not in PROJECTIONS:
        raise ValueError(f"unknown projection {method!r}; choose one of: {', '.join(PROJECTIONS)}")
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(vectors)
    try:
        import umap
    except ImportError as error:
        raise ImportError(
            "UMAP projections need umap-learn: pip install 'gpte[umap]' (or use projection='pca')"
        ) from error
    return umap.UMAP(n_components=2, random_state=seed).fit_transform(vectors)


def projection_figure(
    points: np.ndarray, labels: Sequence, model: str, method: str = "pca", data: str = "a labelled set"
) -> Figure:
    """Scatter of 2-D ``points`` (``project_2d`` of the model's vectors of texts of ``data``), one colour per
    label, the legend (the first ``MAX_LEGEND`` labels) to the right of the axes."""
    labels = np.asarray([str(label) for label in labels])
    figure, axes = _figure(8, 6)
    names = sorted(set(labels.tolist()))
    colours = matplotlib.colormaps["tab20" if len(names) > 10 else "tab10"]
    for number, name in enumerate(names):
        rows = labels == name
        axes.scatter(
            points[rows, 0],
            points[rows, 1],
            s=6,
            alpha=0.7,
            color=colours(number % colours.N),
            label=name if number < MAX_LEGEND else None,
        )
    if len(names) <= MAX_LEGEND:
        _legend(axes, markerscale=2, title="label")
    _title(axes, f"{method.upper()} map of {len(points)} texts of {data}, {len(names)} labels", model)
    axes.set_xlabel(f"{method.upper()} 1")
    axes.set_ylabel(f"{method.upper()} 2")
    return figure


def curve_figure(
    curves: Mapping[str, Mapping[float, float]],
    xlabel: str,
    ylabel: str,
    title: str,
    model: str,
    log_x: bool = False,
) -> Figure:
    """One line per curve name over numbers (each curve maps x -> y), every measured x ticked and labelled, the y
    axis from 0 (or below, for negative values) so that a small change looks small."""
    figure, axes = _figure(8, 4.5)
    for name, points in curves.items():
        axes.plot(list(points), list(points.values()), marker="o", label=name)
    if log_x:
        axes.set_xscale("log", base=2)
    measured = sorted({x for points in curves.values() for x in points})
    axes.set_xticks(measured, [f"{x:g}" for x in measured])
    axes.minorticks_off()
    axes.set_ylim(bottom=min(0, *(min(points.values()) for points in curves.values())))
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    _title(axes, title, model)
    axes.grid(alpha=0.3)
    _legend(axes)
    return figure


def bars_figure(groups: Mapping[str, Mapping[str, float]], xlabel: str, ylabel: str, title: str, model: str) -> Figure:
    """Grouped bars over categories (each series maps category -> y), one colour per series, each bar labelled with
    its value: categories such as precisions are not joined by a line, and bars start at 0."""
    figure, axes = _figure(8, 4.5)
    categories = list(dict.fromkeys(category for values in groups.values() for category in values))
    grouped_bars(axes, groups, categories)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    _title(axes, title, model)
    axes.grid(alpha=0.3, axis="y")
    _legend(axes)
    return figure


def similarity_histogram(
    positive: np.ndarray, negative: np.ndarray, model: str, similarity: str, similar: str, dissimilar: str
) -> Figure:
    """Overlaid histograms of the model's ``similarity`` of positive and negative pairs; ``similar`` and
    ``dissimilar`` say what made a pair one or the other (``gold score ≥ 4 of 0–5 in sts/stsb-en``)."""
    figure, axes = _figure(8, 4.5)
    bins = np.linspace(min(np.min(positive), np.min(negative)), max(np.max(positive), np.max(negative)), 40)
    axes.hist(
        negative, bins=bins, alpha=0.6, label=f"dissimilar pairs ({dissimilar}): {len(negative)}", color="tab:red"
    )
    axes.hist(positive, bins=bins, alpha=0.6, label=f"similar pairs ({similar}): {len(positive)}", color="tab:blue")
    axes.set_xlabel(f"{similarity} similarity")
    axes.set_ylabel("pairs")
    _title(axes, "Similarity of similar and dissimilar pairs", model)
    _legend(axes, below=True)
    return figure


def save(figure: Figure, path: str | Path) -> Path:
    """Write ``figure`` to ``path`` (PNG, its parent folders made) through a temporary name; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, overwrite=True) as temporary:
        figure.savefig(temporary, format="png", dpi=110, bbox_inches="tight")  # the outside legend included
    return path


def _figure(width: float, height: float) -> tuple[Figure, Axes]:
    """A new figure (inches) on its own Agg canvas, and its one axes; laid out again at each draw, outside legend
    included (matplotlib's constrained layout)."""
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _title(axes: Axes, title: str, model: str) -> None:
    axes.set_title(f"{title}\nmodel: {model}")


def _legend(axes: Axes, below: bool = False, **options) -> None:
    """The legend beside the axes (right), or ``below`` them for long entries: never over the data."""
    place = (
        {"loc": "upper center", "bbox_to_anchor": (0.5, -0.15)}
        if below
        else {"loc": "upper left", "bbox_to_anchor": (1.02, 1)}
    )
    axes.legend(fontsize=8, borderaxespad=0, **place, **options)
