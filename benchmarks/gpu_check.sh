#!/usr/bin/env bash
# One prepared GPU check for a session that has the device machine (see README "Speed").
# Run there from the repository root:  bash benchmarks/gpu_check.sh
# It needs nibabel (not on the device image): carry it as a wheel in .whl/ (see the device
# tool's README), e.g. here: pip download --no-deps --only-binary=:all: --python-version 3.12 \
#   --implementation cp --platform manylinux2014_x86_64 -d .whl nibabel==5.3.2
set -euo pipefail
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD/src" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
python3 benchmarks/make_random_ckpt.py /tmp/ckpt_full --full
out="${OUT:-/tmp}"
for precision in float16 float32; do
  python3 benchmarks/bench_engine.py --ckpt /tmp/ckpt_full --device cuda --shape 300x512x512 \
    --repeats 9 --precision "$precision" --image-out /tmp/bench_image.npy | tee -a "$out/gpu_bench.txt"
done
