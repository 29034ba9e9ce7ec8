#!/usr/bin/env bash
# Set up OneTrainer Web on a fresh machine: a virtual environment in .venv with the web,
# the trainer and (with --test) the test tools, plus Debian's chromium for the browser tests.
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
with_tests=0
[ "${1:-}" = "--test" ] && with_tests=1

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
  .venv/bin/pip install --quiet --upgrade pip
fi

# torch first: 2.13.0 is the CPU build these machines keep on disk (small, fast); on a machine
# without it pip takes 2.13.0 from PyPI. Users with their own torch in .venv keep it.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/pip install --quiet "torch==2.13.0"
fi

extras="trainer"
[ "$with_tests" = 1 ] && extras="trainer,test"
.venv/bin/pip install --quiet -e ".[${extras}]"

if [ "$with_tests" = 1 ] && { [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; }; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
fi
if [ "$with_tests" = 1 ] && [ ! -x /usr/sbin/nginx ]; then  # tests/e2e/test_nginx.py: the shipped site
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nginx-light >/dev/null
fi
if [ "$with_tests" = 1 ]; then  # tests/e2e/test_onetrainer_real.py: the real OneTrainer in its own environment
  ./scripts/setup_onetrainer.sh
fi
echo "setup done: $(.venv/bin/python -c 'import torch; from importlib.metadata import version; print("torch", torch.__version__, "flask", version("flask"))')"
