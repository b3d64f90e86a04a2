"""PNG figures: a 2-D map of labelled vectors, score curves, similarity histograms.

Figures are drawn with matplotlib's object API (a ``Figure`` on its own Agg canvas): no pyplot state and no
backend switch, so using this module changes nothing for the caller's own plots.

Every function writes one PNG through a temporary name (no half-written figure under the final name) and
returns its path. 2-D maps use PCA (scikit-learn) or UMAP (``umap-learn``, optional: ``pip install 'gpte[umap]'``).
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


def projection_plot(
    vectors: np.ndarray, labels: Sequence, path: str | Path, method: str = "pca", title: str = ""
) -> Path:
    """Scatter of the 2-D projection of ``vectors``, one colour per label."""
    points = project_2d(np.asarray(vectors), method)
    labels = np.asarray([str(label) for label in labels])
    figure, axes = _figure(7, 6)
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
        axes.legend(fontsize=7, markerscale=2, loc="best")
    axes.set_title(title or f"{method.upper()} of {len(points)} vectors, {len(names)} labels")
    axes.set_xlabel(f"{method} 1")
    axes.set_ylabel(f"{method} 2")
    return _save(figure, path)


def curve_plot(
    curves: Mapping[str, Mapping], path: str | Path, xlabel: str, ylabel: str, title: str = "", log_x: bool = False
) -> Path:
    """One line per curve name; each curve maps x (number or category) -> y."""
    figure, axes = _figure(7, 4.5)
    for name, points in curves.items():
        xs = list(points)
        axes.plot([str(x) for x in xs] if not log_x else xs, [points[x] for x in xs], marker="o", label=name)
    if log_x:
        axes.set_xscale("log", base=2)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return _save(figure, path)


def similarity_histogram(positive: np.ndarray, negative: np.ndarray, path: str | Path, title: str = "") -> Path:
    """Overlaid histograms of the similarities of positive and negative pairs."""
    figure, axes = _figure(7, 4.5)
    bins = np.linspace(min(np.min(positive), np.min(negative)), max(np.max(positive), np.max(negative)), 40)
    axes.hist(negative, bins=bins, alpha=0.6, label=f"negative pairs ({len(negative)})", color="tab:red")
    axes.hist(positive, bins=bins, alpha=0.6, label=f"positive pairs ({len(positive)})", color="tab:blue")
    axes.set_xlabel("similarity")
    axes.set_ylabel("pairs")
    axes.set_title(title)
    axes.legend(fontsize=8)
    return _save(figure, path)


def _figure(width: float, height: float) -> tuple[Figure, Axes]:
    """A new figure (inches) on its own Agg canvas, and its one axes."""
    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _save(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    with atomic_path(path, overwrite=True) as temporary:
        figure.savefig(temporary, format="png", dpi=110)
    return path
