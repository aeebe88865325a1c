#!/usr/bin/env bash
# The GPU check: difflab's CUDA tests (tests/test_gpu.py, `-m gpu`) and its training and sampling speed beside
# diffusers on the same GPU, printed as one table. CI has no GPU; this script is how the GPU path is tested.
#
#   scripts/gpu_check.sh [OUT_DIR]        # at most 8 minutes (its timeouts); about 4 on one H100; writes gpu_check.md (and the logs) to OUT_DIR
#
# It needs a Python with a CUDA build of PyTorch (python3, or $PYTHON) and difflab's dependencies (typer, safetensors,
# torchdiffeq, tqdm, matplotlib, pillow, pytest, hypothesis, scikit-learn's digits come with difflab). diffusers is only
# needed for the comparison: wheels in .whl/ are installed first when present (pip download --no-deps diffusers ...);
# without it the diffusers rows say so. Nothing is downloaded.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu_check}
mkdir -p "$out"
py=${PYTHON:-python3}
if ls .whl/*.whl >/dev/null 2>&1; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/difflab-site .whl/*.whl \
    && export PYTHONPATH=/tmp/difflab-site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
report="$out/gpu_check.md"
"$py" - <<'PY' > "$report"
import torch
name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
print(f"# difflab GPU check: {name}, {torch.cuda.device_count()} GPU(s), torch {torch.__version__}\n")
PY
if ! "$py" -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
  echo "no CUDA device: nothing to check" | tee -a "$report"; exit 1
fi

status=0
echo "## tests (pytest -m gpu)" >> "$report"
timeout 180 "$py" -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu.py > "$out/tests.log" 2>&1 || status=1
tail -n 3 "$out/tests.log" | sed 's/^/    /' >> "$report"

diffusers=no
"$py" -c 'import diffusers' 2>/dev/null && diffusers=yes
echo -e "\n## training step (benchmarks/train_speed.py --device cuda, batch 256, fp32 and bf16)\n" >> "$report"
if [ "$diffusers" = yes ]; then
  for lever in "" "--bf16"; do
    timeout 90 "$py" benchmarks/train_speed.py --device cuda --batch 256 --steps 30 --warmup 5 --rounds 1 $lever \
      > "$out/train${lever:+_bf16}.log" 2>&1 || status=1
    grep -E '^\||^speed ratio|^#' "$out/train${lever:+_bf16}.log" >> "$report"; echo >> "$report"
  done
  echo -e "## sampling (benchmarks/sample_speed.py --device cuda)\n" >> "$report"
  timeout 120 "$py" benchmarks/sample_speed.py --device cuda --rounds 1 --batch 64,1024 --precision fp32,bf16 \
    > "$out/sample.log" 2>&1 || status=1
  grep -E '^\||^#' "$out/sample.log" >> "$report"
else
  echo "diffusers is not installed here: no comparison (put its wheels in .whl/; see the header of this script)" >> "$report"
fi
cat "$report"
exit $status
