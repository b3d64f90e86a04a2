"""Compare result folders: main scores per task side by side, per-type averages, the overall mean over
tasks, and a bar chart of the per-type averages (PNG, with matplotlib).

A sparse model's score is followed by the mean active dimensions of its vectors (its result's ``sparsity``):
``38.17 (q 24.1/d 180.3)`` for queries and documents, ``82.03 (35.2)`` for texts without a role; a multi-vector
model's by the mean token vectors stored per text (its result's ``tokens``): ``38.17 (q 32.0/d 180.3 tokens)``."""

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
TOKENS_LEGEND = "(q/d tokens: mean token vectors stored per query/document; (n tokens): per text without a role)"


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
