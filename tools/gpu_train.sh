#!/usr/bin/env bash
# Continue the bundled model on a GPU machine that cannot reach the network (the device tool).
#
# Here, once (fetches the nibabel wheel the device image lacks, copies the data cache):
#   bash tools/gpu_train.sh --prepare
# There, from the repository root, with .whl and .data carried (about 45 MB), e.g.
#   bash tools/gpu_train.sh 420 --set lr=0.0003 --set refine_p=0.5
# trains for 420 s (then the held-out evaluation runs, a minute or two), writing the run directory
# and the candidate model folder under $OUT (default /tmp/gpu_train) so they come back. Resume the
# next session from them with --init-from (the cumulative step count follows the model folder).
#
# Sample generation runs in the main process. On one CPU thread (benchmarks/train_step_profile.py)
# a training step is ~540 ms: two samples of ~70 ms (~20 ms simulation each, the rest follow-up
# forwards) and ~370 ms forward + backward of the batch. On a GPU the network parts shrink to
# milliseconds and the simulation stays, so expect roughly 5-10x the steps per second (an estimate:
# no GPU has been lent yet to measure it).
set -euo pipefail

if [[ "${1:-}" == "--prepare" ]]; then
  mkdir -p .whl .data
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 -d .whl nibabel==5.3.2
  cache="${NNI_WIDGET_DATA:-$HOME/.cache/nni_widget/data}"
  for source in colin27_aal mni152_tissue lung1_ct lung2_ct; do
    [[ -d "$cache/$source" ]] || { echo "missing $cache/$source: run python -c \"import nni_widget.data as d; d.fetch('$source')\" first" >&2; exit 1; }
    rm -rf ".data/$source" && cp -r "$cache/$source" .data/
  done
  du -sh .whl .data
  exit 0
fi

seconds="${1:?usage: bash tools/gpu_train.sh SECONDS [--set KEY=VALUE ...] (or --prepare, here)}"
shift
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD/src" PYTHONUNBUFFERED=1 NNI_WIDGET_DATA="$PWD/.data"
out="${OUT:-/tmp/gpu_train}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total --format=csv 2>/dev/null || echo "no nvidia-smi: training on $(python3 -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')"
cp -r src/nni_widget/data/models/default "$out/init_model"
status=0
python3 tools/train_default_model.py --run "$out/run" --init-from "$out/init_model" --dest "$out/candidate" \
  --time-limit "$seconds" --steps 1000000 --set device=auto --set num_threads=4 --set max_rounds=5 \
  --set n_real=40 --set n_phantoms=8 "$@" >"$out/train.log" 2>&1 || status=$?
grep -v "step/s" "$out/train.log" | tail -n 40
tail -n 3 "$out/run/train_log.csv" || true
exit "$status"
