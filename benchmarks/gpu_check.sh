#!/usr/bin/env bash
# The GPU checks in one go (for a lent GPU machine with torch, h5py, scipy, matplotlib, pytest):
# CUDA tests, then the ddn and DeLaN benchmarks on the GPU, and the single-sample (control-loop)
# rate on that machine's CPU. Writes reports to $OUT (or benchmarks/results/gpu when unset).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-benchmarks/results/gpu}"
mkdir -p "$out"
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 benchmarks/cuda_tests.py --output "$out/cuda_tests.md"
python3 benchmarks/ddn_derivatives.py --device cuda --batch 1000 10000 100000 --output "$out/ddn_derivatives_cuda.md"
python3 benchmarks/delan_speed.py --device cuda --output "$out/delan_speed_cuda.md"
python3 benchmarks/delan_speed.py --device cpu --threads 1 --output "$out/delan_speed_gpu_host_cpu.md"
python3 benchmarks/single_sample.py --threads 1 --output "$out/single_sample_gpu_host_cpu.md"
