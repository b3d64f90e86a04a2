"""How long the ``gpte`` command takes to start: ``gpte --help``, ``gpte --version``, ``python -c "import gpte"`` and
``gpte encode --help``, each the median wall time of ``--repeats`` runs in fresh processes, against
``python -c "import torch"`` measured in the same rounds (the cost a verb that loads a model pays anyway). The
commands run in turn within each round, so a drift in machine speed touches them alike (as in
``interleaved_timing.measure``).

    python benchmarks/cli_startup.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from interleaved_timing import cpu_description


def commands() -> dict[str, list[str]]:
    """Each timed command by its name: the ``gpte`` script beside this Python (else ``python -m gpte``)."""
    script = shutil.which("gpte", path=str(Path(sys.executable).parent))
    gpte = [script] if script else [sys.executable, "-m", "gpte"]
    return {
        "gpte --help": [*gpte, "--help"],
        "gpte --version": [*gpte, "--version"],
        "import gpte": [sys.executable, "-c", "import gpte"],
        "gpte encode --help": [*gpte, "encode", "--help"],
        "import torch (reference)": [sys.executable, "-c", "import torch"],
    }


def wall_time(command: list[str]) -> float:
    """Seconds ``command`` takes to exit (it must exit 0)."""
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def measure(name_to_command: dict[str, list[str]], repeats: int) -> dict[str, float]:
    """Median seconds of each command over ``repeats`` interleaved rounds, after one warm-up run of each (which fills
    the page cache and writes the bytecode caches)."""
    for command in name_to_command.values():
        wall_time(command)
    times: dict[str, list[float]] = {name: [] for name in name_to_command}
    for _ in range(repeats):
        for name, command in name_to_command.items():
            times[name].append(wall_time(command))
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed runs of each command (default: 7)")
    args = parser.parse_args()
    print(cpu_description())
    medians = measure(commands(), args.repeats)
    reference = medians["import torch (reference)"]
    print(f"median of {args.repeats} runs each; ratio: against import torch")
    for name, seconds in medians.items():
        print(f"{name:<26} {seconds:7.3f} s  {seconds / reference:5.2f}x")


if __name__ == "__main__":
    main()
