#!/usr/bin/env bash
# The GPU checks in one go (for a lent GPU machine with torch, h5py, scipy, matplotlib, pytest):
# the CUDA tests, whole training runs on the GPU, the training-step rates (eager, CUDA graph,
# compiled) and the inference rates (eager, compiled in two modes, with the kernels' profile).
# Writes reports to $OUT (or benchmarks/results/gpu when unset), each as soon as it is done, so
# that a run cut short still returns what finished. About 8 minutes on an H100.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-benchmarks/results/gpu}"
mkdir -p "$out"
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.version.cuda)" | tee -a "$out/gpu.txt"
python3 benchmarks/cuda_tests.py --output "$out/cuda_tests.md" >"$out/cuda_tests.log" 2>&1
tail -40 "$out/cuda_tests.log"
python3 benchmarks/gpu_training.py --output "$out/gpu_training_cuda.md" 2>&1 | tail -25
python3 benchmarks/gpu_steps.py --output "$out/gpu_steps_cuda.md" 2>&1 | tail -30
python3 benchmarks/gpu_steps.py --skip-steps --infer-modes default max-autotune-no-cudagraphs \
    --profile "$out/gpu_inference_profile.txt" --output "$out/gpu_inference_cuda.md" 2>&1 | tail -20
