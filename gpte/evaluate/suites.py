"""Named task suites: lists of task names or glob patterns (``sts/stsb-*``) over the tasks of a data folder.

The built-in suites name the tasks of the ../shared/data layout; a suite can also be a JSON file holding
a list of names/patterns (or ``{"tasks": [...]}``), so a team's own benchmark is one small file.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path

SUITES: dict[str, list[str]] = {
    "all": ["*"],
    "english": [
        "sts/stsb-en",
        "sts/sick-r",
        "pair_classification/sick-e",
        "classification/banking77",
        "clustering/banking77",
        "reranking/trecqa",
        "retrieval/cranfield",
    ],
    "sts-multilingual": ["sts/stsb-*"],
    "tatoeba": ["bitext_mining/tatoeba-*"],
    "quick": ["sts/stsb-en", "pair_classification/sick-e", "reranking/trecqa"],
}


def suite_patterns(suite: str) -> list[str]:
    """The task names/patterns of a built-in suite, or of a suite file (``.json``).

    Raises:
        ValueError: an unknown suite (the suites are listed) or a malformed suite file.
    """
    if suite in SUITES:
        return SUITES[suite]
    path = Path(suite)
    if path.suffix == ".json" and path.is_file():
        return _read_suite_file(path)
    close = difflib.get_close_matches(suite, SUITES, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise ValueError(f"unknown suite {suite!r}; {hint}suites: {', '.join(SUITES)}, or a .json file listing task names")


def _read_suite_file(path: Path) -> list[str]:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error.msg}, line {error.lineno})") from None
    names = content.get("tasks") if isinstance(content, dict) else content
    if not isinstance(names, list) or not names or not all(isinstance(name, str) for name in names):
        raise ValueError(f'{path}: expected a non-empty list of task names, or {{"tasks": [...]}}')
    return names
