"""``gpte report``: one column per model, named by the model its results record, whether one ``gpte evaluate``
output folder holds several models or several folders are given; headers never cut; the bar chart's title, value
labels, legend and axis label."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gpte.cli import main
from gpte.evaluate.report import bar_figure, collect, format_table
from gpte.evaluate.results import result_path, write_result

LONG = "sentence-transformers/a-rather-long-model-name-v2"


def _result(folder: Path, model: str, task: str, task_type: str, score: float) -> None:
    """One result file as ``gpte evaluate -o folder`` writes it (the fields the report reads)."""
    result = {
        "task": task,
        "task_type": task_type,
        "main_score": "cosine_spearman",
        "main_score_value": score,
        "scores": {"cosine_spearman": score},
        "provenance": {"model": model, "model_sha256": f"sha-{model}"},
    }
    write_result(result_path(folder, model, task), result)


@pytest.fixture
def results(tmp_path) -> Path:
    """One evaluate output holding two models: ``small`` and ``LONG``, on an STS and a Retrieval task."""
    folder = tmp_path / "results"
    _result(folder, "small", "sts/toy", "STS", 0.5)
    _result(folder, "small", "retrieval/toy", "Retrieval", 0.25)
    _result(folder, LONG, "sts/toy", "STS", 0.75)
    _result(folder, LONG, "retrieval/toy", "Retrieval", 0.4)
    return folder


def _columns(table_text: str) -> dict[str, list[str]]:
    """Row title -> its cells, split on runs of two or more spaces."""
    return {cells[0]: cells[1:] for cells in (re.split(r" {2,}", line.strip()) for line in table_text.splitlines())}


def test_one_output_folder_with_two_models_gives_one_column_per_model(results):
    table = collect([results])
    assert list(table) == [LONG, "small"]  # named by the models, in file order
    assert table["small"]["sts/toy"]["main_score_value"] == 0.5
    assert table[LONG]["sts/toy"]["main_score_value"] == 0.75
    rows = _columns(format_table(table))
    assert rows["task"] == [LONG, "small"]  # the header in full
    assert rows["sts/toy"] == ["75.00", "50.00"] and rows["retrieval/toy"] == ["40.00", "25.00"]
    assert rows["mean over tasks"] == ["57.50", "37.50"]


def test_two_folders_give_one_column_per_model_and_the_header_is_never_cut(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    _result(first, LONG, "sts/toy", "STS", 0.75)
    _result(second, LONG + "-finetuned", "sts/toy", "STS", 0.8)
    text = format_table(collect([first, second]))
    header, row = text.splitlines()[:2]
    assert header.split() == ["task", LONG, LONG + "-finetuned"]
    assert row.split() == ["sts/toy", "75.00", "80.00"]
    assert len({len(line) for line in text.splitlines()}) == 1  # columns aligned: widths from the content


def test_the_same_model_in_two_folders_is_two_columns_named_by_folder(tmp_path):
    first, second = tmp_path / "before", tmp_path / "after"
    _result(first, "small", "sts/toy", "STS", 0.5)
    _result(second, "small", "sts/toy", "STS", 0.6)
    table = collect([first, second])
    assert list(table) == [f"small ({first})", f"small ({second})"]
    assert [results["sts/toy"]["main_score_value"] for results in table.values()] == [0.5, 0.6]


def test_two_results_of_one_model_and_task_in_a_folder_are_refused(results):
    _result(results / "copy", "small", "sts/toy", "STS", 0.9)  # e.g. an earlier run copied into the folder
    with pytest.raises(ValueError, match=rf"2 results of model small on task sts/toy below {results}"):
        collect([results])


def test_cli_report_prints_each_model_in_its_column_and_draws_the_chart(results, tmp_path, capsys):
    assert main(["report", str(results), "--plot", str(tmp_path / "bars.png")]) == 0
    out = capsys.readouterr().out
    assert _columns(out)["sts/toy"] == ["75.00", "50.00"]
    assert (tmp_path / "bars.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bar_chart_has_a_title_value_labels_an_outside_legend_and_names_the_metric(results):
    figure = bar_figure(collect([results]))
    axes = figure.axes[0]
    assert "per task type" in axes.get_title()
    assert "mean of the tasks' main scores" in axes.get_ylabel()
    labels = {text.get_text() for text in axes.texts}
    assert {"75.0", "50.0", "40.0", "25.0", "57.5", "37.5"} <= labels  # every bar's value written on it
    figure.canvas.draw()
    legend = axes.get_legend().get_window_extent()
    box = axes.get_window_extent()
    assert legend.y1 <= box.y0 or legend.x0 >= box.x1  # below or beside the bars, never over them
    assert [text.get_text() for text in axes.get_legend().get_texts()] == [LONG, "small"]
    assert axes.get_ylim()[0] == 0
