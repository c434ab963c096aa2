#!/usr/bin/env bash
# GPU smoke test: train, resume, evaluate (fp32 and bf16), compare and sample on a CUDA device,
# evaluate the GPU-trained run on the CPU (checkpoints are device-free), and print importance
# sampling's throughput on the GPU against the CPU, each measured in this run.
#
#   bash benchmarks/gpu_smoke.sh            # needs a CUDA device; exits 0 with a note without
#   DEVICE=cuda:1 OUT=/tmp/smoke bash benchmarks/gpu_smoke.sh
#   DEVICE=cpu bash benchmarks/gpu_smoke.sh  # the same commands on the CPU: a dry run
#
# Run from the repository root with the package installed (make install).
set -euo pipefail

PYTHON=${PYTHON:-python}
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-$(mktemp -d)}

"$PYTHON" -c "import torch, pyro_vae"  # fails loudly when the package is not installed
if [[ "$DEVICE" == cuda* ]]; then
    if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
        echo "gpu_smoke: no CUDA device here; nothing to do (DEVICE=cpu runs the same commands)"
        exit 0
    fi
    "$PYTHON" -c "import torch; print('device:', torch.cuda.get_device_name(0))"
fi

run="$OUT/run"
rm -rf "$run"
"$PYTHON" -m pyro_vae train --model bernoulli_vae --data digits --epochs 3 --out "$run" \
    --device "$DEVICE" --no-progress
"$PYTHON" -m pyro_vae train --resume "$run" --epochs 5 --device "$DEVICE" --no-progress
"$PYTHON" -m pyro_vae evaluate "$run" --num-samples 1000 --device "$DEVICE" --no-progress
"$PYTHON" -m pyro_vae evaluate "$run" --num-samples 1000 --device "$DEVICE" --precision bf16 \
    --no-progress
"$PYTHON" -m pyro_vae evaluate "$run" --num-samples 200 --device "$DEVICE" --ais \
    --ais-steps 50 --decompose --surgery --max-data 20 --no-progress
"$PYTHON" -m pyro_vae evaluate "$run" --num-samples 1000 --device cpu --no-progress
"$PYTHON" -m pyro_vae compare "$run" --repeats 5 --num-data 20 --reference-samples 500 \
    --device "$DEVICE" --no-progress
"$PYTHON" -m pyro_vae sample "$run" --device "$DEVICE" --interpolate --attributes

# Throughput of log_likelihood at K = 5000, GPU against CPU (the model's initial weights).
for where in cpu "$DEVICE"; do
    "$PYTHON" benchmarks/log_likelihood_roof.py --device "$where" --num-data 100 \
        --no-progress --json "$OUT/roof_${where//:/_}.json" | tail -n 5
done
"$PYTHON" - "$OUT/roof_cpu.json" "$OUT/roof_${DEVICE//:/_}.json" <<'PY'
import json, sys
cpu, gpu = (json.load(open(p))["results"] for p in sys.argv[1:])
for precision in cpu:
    ratio = gpu[precision]["datapoint_samples_per_second"] / cpu[precision]["datapoint_samples_per_second"]
    print(f"log_likelihood {precision}: GPU {ratio:.1f}x the CPU's datapoint-samples per second")
PY
echo "gpu_smoke: all commands succeeded ($OUT)"
