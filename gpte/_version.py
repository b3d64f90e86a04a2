"""gpte's version, in one place (pyproject reads it; results and model cards record it)."""

__version__ = "0.1.0"
