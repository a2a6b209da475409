#!/usr/bin/env bash
# Proves that arm-tokenizer installs, imports and passes its own tests with none of
# arm-data, arm-core or arm-rl present; then that arm-data does the same with only
# arm-tokenizer beside it.
#
# Reinstalling torch into a second venv would cost minutes and gigabytes, so the fresh venv
# sees the main venv's THIRD-PARTY packages through a "shadow" directory of symlinks that
# leaves out every ARM distribution (and any plugin), then `pip install`s arm-tokenizer
# from its source directory (a real, non-editable install that resolves its dependencies
# against what is visible).
set -euo pipefail
MAIN_VENV=${1:-.venv}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/arm-alone.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
MAIN_SITE=$("$MAIN_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')

mkdir -p "$WORK/shadow"
for entry in "$MAIN_SITE"/*; do
  name=$(basename "$entry")
  case "$name" in
    arm_*|arm-*|__editable__*arm*|__editable___arm*|*plugin_template*|*.pth) continue ;;
  esac
  ln -s "$entry" "$WORK/shadow/$name"
done

python3 -m venv "$WORK/venv"
ALONE_SITE=$("$WORK/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$WORK/shadow" > "$ALONE_SITE/_arm_shadow_deps.pth"
PY="$WORK/venv/bin/python"

echo "== pip install packages/arm-tokenizer[hf,test] into a venv without the other ARM packages"
# [hf]: transformers, for the hf_vision / hf_text towers its tests load from tiny checkpoints.
if ! "$PY" -m pip install -q "$ROOT/packages/arm-tokenizer[hf,test]" >"$WORK/pip.log" 2>&1; then
  grep -v "^WARNING: Location" "$WORK/pip.log"; echo "FAIL: pip install packages/arm-tokenizer[hf,test]"; exit 1
fi
if grep -qiE "^(Collecting|Downloading) (torch|lightning)" "$WORK/pip.log"; then
  echo "note: pip fetched heavy dependencies the shadow should have provided"
fi

echo "== import arm_tokenizer works, arm_data / arm_core / arm_rl do not exist"
"$PY" -c "import arm_tokenizer, arm_tokenizer.framework.registry, arm_tokenizer.cli; print('arm_tokenizer', arm_tokenizer.__version__, 'from', arm_tokenizer.__file__)"
for mod in arm_data arm_core arm_rl; do
  if "$PY" -c "import $mod" 2>/dev/null; then echo "FAIL: $mod importable in the alone venv"; exit 1; fi
done
"$WORK/venv/bin/arm-tokenizer" list >"$WORK/list.txt"
if grep -E " (arm-data|arm-core|arm-rl) " "$WORK/list.txt"; then echo "FAIL: other ARM packages listed"; exit 1; fi
echo "components registered without the other packages: $(($(wc -l <"$WORK/list.txt") - 1))"

echo "== arm-tokenizer's own tests, alone"
cd "$WORK"  # not the repo root: the installed copy is what gets imported
OMP_NUM_THREADS=2 "$PY" -m pytest -q -p no:cacheprovider --durations=15 --rootdir "$ROOT/packages/arm-tokenizer" "$ROOT/packages/arm-tokenizer/tests"

echo "== then arm-data on top: usable with only arm-tokenizer and arm-data installed"
if ! "$PY" -m pip install -q "$ROOT/packages/arm-data" >"$WORK/pip-data.log" 2>&1; then
  grep -v "^WARNING: Location" "$WORK/pip-data.log"; echo "FAIL: pip install packages/arm-data"; exit 1
fi
"$PY" -c "import arm_data, arm_data.shapes, arm_data.formats; print('arm_data', arm_data.__version__)"
for mod in arm_core arm_rl; do
  if "$PY" -c "import $mod" 2>/dev/null; then echo "FAIL: $mod importable in the alone venv"; exit 1; fi
done
OMP_NUM_THREADS=2 "$PY" -m pytest -q -p no:cacheprovider --durations=5 --rootdir "$ROOT/packages/arm-data" "$ROOT/packages/arm-data/tests"
