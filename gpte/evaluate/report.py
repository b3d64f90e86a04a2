"""Compare evaluation results: main scores per task side by side, one column per model, per-type averages, the
overall mean over tasks, and a bar chart of the per-type averages (PNG, with matplotlib).

A column is one model of one folder given: ``gpte report results`` (one ``gpte evaluate -o results`` output
holding a subfolder per model) shows each model, named by the model its results record (``provenance.model``);
``gpte report a b`` shows the models of both; the same model in two folders is two columns, ``NAME (FOLDER)``.

A sparse model's score is followed by the mean active dimensions of its vectors (its result's ``sparsity``):
``38.17 (q 24.1/d 180.3)`` for queries and documents, ``82.03 (35.2)`` for texts without a role; a multi-vector
model's by the mean token vectors stored per text (its result's ``tokens``): ``38.17 (q 32.0/d 180.3 tokens)``."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpte.atomic import atomic_path
from gpte.errors import extra_needed
from gpte.evaluate.results import read_results

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

Results = dict[str, dict[str, Any]]  # task name -> result


def collect(folders: list[Path]) -> dict[str, Results]:
    """Column label -> task name -> result: one column per model of each folder, labelled by the model's name, or
    ``NAME (FOLDER)`` where several folders hold that name.

    Raises:
        FileNotFoundError: a folder without results.
        ValueError: a folder holding two results of one model on one task (say, a copied model folder): which one
            to show would be a guess, so the message names the model, the task and the folder, and asks for the
            model folders one by one.
    """
    columns = [(folder, model, results) for folder in dict.fromkeys(folders) for model, results in _models(folder)]
    names = Counter(model for _, model, _ in columns)
    return {(model if names[model] == 1 else f"{model} ({folder})"): results for folder, model, results in columns}


def _models(folder: Path) -> list[tuple[str, Results]]:
    """(model name, its results) for each model below ``folder``, in file order; a result without provenance is
    filed under the folder's name."""
    models: dict[str, Results] = {}
    for result in read_results(folder):
        model = str((result.get("provenance") or {}).get("model") or folder)
        results = models.setdefault(model, {})
        if result["task"] in results:
            raise ValueError(
                f"2 results of model {model} on task {result['task']} below {folder} (a copied or renamed model "
                "folder?); give each model folder on its own to compare them"
            )
        results[result["task"]] = result
    if not models:
        raise FileNotFoundError(f"no result files below {folder}")
    return list(models.items())


def type_averages(results: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Mean main score per task type, and ``overall``: the mean over all tasks."""
    by_type: dict[str, list[float]] = defaultdict(list)
    for result in results.values():
        by_type[result["task_type"]].append(result["main_score_value"])
    averages = {task_type: sum(v) / len(v) for task_type, v in sorted(by_type.items())}
    values = [result["main_score_value"] for result in results.values()]
    averages["overall"] = sum(values) / len(values)
    return averages


SPARSITY_LEGEND = "(q/d: mean active dimensions of query/document vectors; (n): of the texts without a role)"
TOKENS_LEGEND = "(q/d tokens: mean token vectors stored per query/document; (n tokens): per text without a role)"


def format_table(table: dict[str, Results]) -> str:
    """Main scores × 100: one row per task, then per-type averages and the overall mean; one column per label of
    ``table``, each as wide as its label or widest cell (nothing is cut). A sparse model's scores carry its vectors'
    active dimensions (``sparsity_note``), explained under the table."""
    labels = list(table)
    tasks = sorted({name for results in table.values() for name in results})
    averages = {label: type_averages(results) for label, results in table.items()}
    keys = sorted({k for a in averages.values() for k in a}, key=lambda k: (k == "overall", k))
    rows = [("task", labels)]
    rows += [(name, [_cell(table[label].get(name)) for label in labels]) for name in tasks]
    rows += [
        (
            "mean over tasks" if key == "overall" else f"mean {key}",
            [f"{100 * averages[label][key]:.2f}" if key in averages[label] else "-" for label in labels],
        )
        for key in keys
    ]
    first = max(len(title) for title, _ in rows)
    widths = [max(len(cells[i]) for _, cells in rows) for i in range(len(labels))]
    lines = [
        f"{title:<{first}}  " + "  ".join(f"{cell:>{width}}" for cell, width in zip(cells, widths))
        for title, cells in rows
    ]
    for key, legend in (("sparsity", SPARSITY_LEGEND), ("tokens", TOKENS_LEGEND)):
        if any(result.get(key) for results in table.values() for result in results.values()):
            lines.append(legend)
    return "\n".join(lines)


def sparsity_note(sparsity: dict[str, float] | None) -> str:
    """A sparse result's active dimensions, short: ``q 24.1/d 180.3``, or ``35.2`` for texts without a role; "" for
    a dense result."""
    return _role_note(sparsity, ("query_active_dims", "document_active_dims", "active_dims"))


def tokens_note(tokens: dict[str, float] | None) -> str:
    """A multi-vector result's mean stored token vectors, short: ``q 32.0/d 180.3 tokens``, or ``35.2 tokens`` for
    texts without a role; "" for other results."""
    note = _role_note(tokens, ("query_tokens", "document_tokens", "tokens"))
    return f"{note} tokens" if note else ""


def _role_note(figures: dict[str, float] | None, names: tuple[str, str, str]) -> str:
    """``q {query}/d {document}`` or ``{no role}`` of the ``names`` (query, document, no role) in ``figures``."""
    shorts = dict(zip(names, ("q ", "d ", "")))
    return "/".join(f"{short}{figures[name]:.1f}" for name, short in shorts.items() if name in (figures or {}))


def _cell(result: dict[str, Any] | None) -> str:
    if result is None:
        return "-"
    note = sparsity_note(result.get("sparsity")) or tokens_note(result.get("tokens"))
    return f"{100 * result['main_score_value']:.2f}" + (f" ({note})" if note else "")


def bar_chart(table: dict[str, Results], path: Path) -> Path:
    """``bar_figure`` of ``table`` written to ``path`` (PNG) through a temporary name; returns ``path``."""
    figure = bar_figure(table)
    with atomic_path(path, overwrite=True) as temporary:
        figure.savefig(temporary, format="png", dpi=100, bbox_inches="tight")  # the legend below included
    return path


def bar_figure(table: dict[str, Results]) -> Figure:
    """A grouped bar chart of the per-type averages of main scores (× 100), one bar colour per column of ``table``,
    each bar labelled with its value, the legend below the axes (never over a bar); a matplotlib ``Figure``.

    Drawn on a ``Figure`` with its own Agg canvas: no pyplot state, no backend switch for the caller.
    """
    with extra_needed("eval"):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

    averages = {label: type_averages(results) for label, results in table.items()}
    keys = sorted({k for a in averages.values() for k in a}, key=lambda k: (k == "overall", k))
    figure = Figure(figsize=(max(6, 1.2 * len(keys) * len(table)), 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    series = {label: {key: 100 * value for key, value in values.items()} for label, values in averages.items()}
    grouped_bars(axes, series, keys, names=["all tasks" if key == "overall" else key for key in keys], rotation=30)
    axes.set_ylabel("mean of the tasks' main scores × 100")
    axes.set_title("Main score per task type (mean over the type's tasks)")
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncols=min(len(table), 3), fontsize=8, frameon=False)
    return figure


def grouped_bars(
    axes: Axes,
    series: Mapping[str, Mapping[Any, float]],
    categories: Sequence[Any],
    names: Sequence[str] | None = None,
    rotation: float = 0,
) -> None:
    """Draw on matplotlib ``axes`` one group of bars per category, one bar per series (a series maps category ->
    value; a missing value has no bar), each bar labelled with its value; the categories' ``names`` (default
    ``str``) as ticks, turned by ``rotation`` degrees."""
    width = 0.8 / len(series)
    for offset, (label, values) in enumerate(series.items()):
        present = [i for i, category in enumerate(categories) if category in values]
        bars = axes.bar(
            [i + offset * width for i in present], [values[categories[i]] for i in present], width, label=label
        )
        axes.bar_label(bars, fmt="%.1f", fontsize=7)
    ticks = [i + 0.4 - width / 2 for i in range(len(categories))]
    axes.set_xticks(
        ticks, names or [str(c) for c in categories], rotation=rotation, ha="right" if rotation else "center"
    )
    axes.margins(y=0.1)  # room for the value labels; bars keep the axis at 0
