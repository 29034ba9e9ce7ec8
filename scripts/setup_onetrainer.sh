#!/usr/bin/env bash
# Build .venv-onetrainer: a virtual environment where the real OneTrainer runs (on the CPU too),
# with this product installed beside it, for tests/e2e/test_onetrainer_real.py and the overhead
# benchmark. OneTrainer needs its own: torchvision 0.27 does not import beside .venv's torch 2.13.
#
# Cached: the environment is reused while its stamp (OneTrainer's requirement pins, mgds's and
# OneTrainer's files that pin them, this product's pyproject.toml and this script) is unchanged.
# A package that cannot be installed ends the script with its pip error (never a half environment
# marked as done: the stamp is written last).
#
#   ONETRAINER_DIR  the OneTrainer checkout (default ../shared/third_party/OneTrainer)
#   MGDS_DIR        its data loader mgds   (default ../shared/third_party/mgds)
#   OT_PYTHON       the interpreter for the venv (default python3.11, else python3)
set -euo pipefail
cd "$(dirname "$0")/.."

OT_DIR=${ONETRAINER_DIR:-../shared/third_party/OneTrainer}
MGDS_DIR=${MGDS_DIR:-../shared/third_party/mgds}
VENV=.venv-onetrainer
PY=${OT_PYTHON:-$(command -v python3.11 || command -v python3)}

for need in "$OT_DIR/requirements-global.txt" "$OT_DIR/requirements-default.txt" "$MGDS_DIR/pyproject.toml"; do
  if [ ! -f "$need" ]; then
    echo "setup_onetrainer: $need is missing: OneTrainer and mgds are expected in ../shared/third_party" >&2
    exit 2
  fi
done

stamp=$(cat "$OT_DIR/requirements-global.txt" "$OT_DIR/requirements-default.txt" "$MGDS_DIR/pyproject.toml" \
        "$MGDS_DIR/requirements.txt" pyproject.toml "$0" | sha256sum | cut -d' ' -f1)
if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.stamp" 2>/dev/null)" = "$stamp" ]; then
  echo "setup_onetrainer: $VENV is up to date (stamp ${stamp:0:12})"
  exit 0
fi

rm -rf "$VENV"
"$PY" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip

# OneTrainer's own torch pins (requirements-default.txt); from PyPI these carry the CUDA libraries
torch_pins=$(grep -E '^(torch|torchvision)==' "$OT_DIR/requirements-default.txt" | sed 's/#.*//')
# shellcheck disable=SC2086
"$VENV/bin/pip" install --quiet $torch_pins

# its global requirements, less what comes from git (diffusers, mgds, muon), what a trainer
# never needs here (yt-dlp, pre-commit) and comments; diffusers from PyPI instead of its git pin
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
grep -v '^-e git\|^#\|^$\|yt-dlp\|pre-commit' "$OT_DIR/requirements-global.txt" | sed 's/#.*//' > "$work/reqs.txt"
"$VENV/bin/pip" install --quiet -r "$work/reqs.txt" diffusers

# mgds from a copy: the shared folder is read-only, and its checkout has no .git for setuptools-scm
cp -r "$MGDS_DIR" "$work/mgds"
rm -rf "$work/mgds/build"
SETUPTOOLS_SCM_PRETEND_VERSION=0.0.1 "$VENV/bin/pip" install --quiet "$work/mgds"

# the product beside it, with its test tools; OneTrainer's transformers pin stays
"$VENV/bin/pip" install --quiet -e ".[trainer,test]" "$(grep -E '^transformers==' "$OT_DIR/requirements-global.txt" | sed 's/ *#.*//')"

"$VENV/bin/python" - <<'EOF'
import torch, torchvision, diffusers, transformers, mgds  # noqa: F401 - the import is the check
print("setup_onetrainer: torch", torch.__version__, "torchvision", torchvision.__version__,
      "diffusers", diffusers.__version__, "transformers", transformers.__version__)
EOF
echo "$stamp" > "$VENV/.stamp"
