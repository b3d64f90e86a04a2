"""Compare result folders: main scores per task side by side, per-type averages, the overall mean over
tasks, and a bar chart of the per-type averages (PNG, with matplotlib).

A sparse model's score is followed by the mean active dimensions of its vectors (its result's ``sparsity``):
``38.17 (q 24.1/d 180.3)`` for queries and documents, ``82.03 (35.2)`` for texts without a role."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from gpte.errors import extra_needed
from gpte.evaluate.results import read_results


def collect(folders: list[Path]) -> dict[str, dict[str, dict[str, Any]]]:
    """folder label -> task name -> result. Raises FileNotFoundError for a folder without results."""
    table = {}
    for folder in folders:
        results = read_results(folder)
        if not results:
            raise FileNotFoundError(f"no result files below {folder}")
        table[str(folder)] = {result["task"]: result for result in results}
    return table


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


def format_table(table: dict[str, dict[str, dict[str, Any]]]) -> str:
    """Main scores × 100: one row per task, then per-type averages and the overall mean; one column per folder.
    A sparse model's scores carry its vectors' active dimensions (``sparsity_note``), explained under the table."""
    labels = list(table)
    tasks = sorted({name for results in table.values() for name in results})
    width = max([len(name) for name in tasks] + [24])
    rows = {name: [_cell(table[label].get(name)) for label in labels] for name in tasks}
    column = max([18] + [len(cell) for cells in rows.values() for cell in cells])
    lines = [f"{'task':<{width}}  " + "  ".join(f"{label[-column:]:>{column}}" for label in labels)]
    for name, cells in rows.items():
        lines.append(f"{name:<{width}}  " + "  ".join(f"{cell:>{column}}" for cell in cells))
    averages = {label: type_averages(results) for label, results in table.items()}
    for key in sorted({k for a in averages.values() for k in a}, key=lambda k: (k == "overall", k)):
        cells = [averages[label].get(key) for label in labels]
        title = "mean over tasks" if key == "overall" else f"mean {key}"
        lines.append(
            f"{title:<{width}}  "
            + "  ".join(f"{100 * c:{column}.2f}" if c is not None else f"{'-':>{column}}" for c in cells)
        )
    if any(result.get("sparsity") for results in table.values() for result in results.values()):
        lines.append(SPARSITY_LEGEND)
    return "\n".join(lines)


def sparsity_note(sparsity: dict[str, float] | None) -> str:
    """A sparse result's active dimensions, short: ``q 24.1/d 180.3``, or ``35.2`` for texts without a role; "" for
    a dense result."""
    names = {"query_active_dims": "q ", "document_active_dims": "d ", "active_dims": ""}
    return "/".join(f"{short}{sparsity[name]:.1f}" for name, short in names.items() if name in (sparsity or {}))


def _cell(result: dict[str, Any] | None) -> str:
    if result is None:
        return "-"
    note = sparsity_note(result.get("sparsity"))
    return f"{100 * result['main_score_value']:.2f}" + (f" ({note})" if note else "")


def bar_chart(table: dict[str, dict[str, dict[str, Any]]], path: Path) -> Path:
    """A grouped bar chart of per-type averages (× 100) per folder, written to ``path`` (PNG).

    Drawn on a ``Figure`` with its own Agg canvas: no pyplot state, no backend switch for the caller.
    """
    with extra_needed("eval"):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

    averages = {label: type_averages(results) for label, results in table.items()}
    keys = sorted({k for a in averages.values() for k in a}, key=lambda k: (k == "overall", k))
    figure = Figure(figsize=(max(6, 1.2 * len(keys) * len(table)), 4))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    width = 0.8 / len(table)
    for offset, (label, values) in enumerate(averages.items()):
        axes.bar(
            [i + offset * width for i in range(len(keys))],
            [100 * values.get(k, 0) for k in keys],
            width,
            label=Path(label).name,
        )
    axes.set_xticks([i + 0.4 - width / 2 for i in range(len(keys))], keys, rotation=30, ha="right")
    axes.set_ylabel("main score × 100")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return path
