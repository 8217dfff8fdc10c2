#!/usr/bin/env bash
# The wheels the GPU check installs on its node (benchmarks/gpu_check.py --wheels DIR), made on any
# machine that reaches PyPI. The node runs Python 3.12 on manylinux x86_64 with torch, torchvision,
# numpy, scipy, pandas, pillow, opencv-python-headless, pytest, tqdm, pyyaml, matplotlib and psutil;
# these are what the check's code imports there and the node lacks, each named (no dependency is
# resolved: --no-deps), at the versions pyproject.toml pins or the test environment resolves.
# facexlib's package imports its detection, recognition and tracking parts too, which need only
# what the node has. pipeline.config merges config layers with snakemake.utils (as Snakemake
# merges --configfile files), which imports three of Snakemake's interface packages and nothing else. setuptools builds the project itself (--no-build-isolation) on the node.
#   benchmarks/gpu_wheels.sh wheels/        # then send wheels/ with the check (at most 64 MiB)
set -euo pipefail
out="${1:?usage: benchmarks/gpu_wheels.sh OUT_DIR}"
mkdir -p "$out"
python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$out" \
  --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 --platform any \
  facexlib==0.3.0 pytorch-fid==0.3.0 \
  snakemake==9.27.1 snakemake-interface-common==1.23.0 snakemake-interface-logger-plugins==2.1.0 \
  snakemake-interface-storage-plugins==4.4.1 \
  jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1 attrs==26.1.0 \
  typing_extensions==4.16.0 \
  requests==2.34.2 urllib3==2.8.0 idna==3.20 certifi==2026.10.19.post1 charset-normalizer==3.5.3 \
  setuptools==84.2.1
size=$(du -sk "$out" | cut -f1)
echo "$(ls "$out" | wc -l) wheels, ${size} KiB in $out"
if [ "$size" -gt $((64 * 1024)) ]; then
  echo "more than 64 MiB: too large to send with the check" >&2
  exit 1
fi
