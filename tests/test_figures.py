"""Figures are drawn without pyplot: importing and using gpte's plotting leaves matplotlib's global state (the
backend, pyplot's figure list) as the caller had it."""

from __future__ import annotations

import subprocess
import sys

PNG = b"\x89PNG\r\n\x1a\n"

DRAW = """
import sys
from pathlib import Path

import numpy as np

from gpte.analysis.plots import curve_plot, projection_plot, similarity_histogram
from gpte.evaluate.report import bar_chart

vectors = np.random.default_rng(0).standard_normal((20, 6))
projection_plot(vectors, ["a", "b"] * 10, "projection.png")
curve_plot({"model": {8: 0.5, 16: 0.7}}, "curve.png", "dimensions", "score", log_x=True)
similarity_histogram(vectors[:10, 0], vectors[10:, 0], "histogram.png")
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
