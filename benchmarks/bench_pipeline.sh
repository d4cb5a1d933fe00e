#!/usr/bin/env bash
# Benchmark: wall time of a full `dvc repro` and of a no-op `dvc repro`, in a fresh clone of
# this repository (committed state), on the given profile (default: mini, the README's default).
#   bash benchmarks/bench_pipeline.sh [mini|smoke]
# Prints the figures; asserts nothing. Run with the project's venv active.
set -euo pipefail
profile=${1:-mini}
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone -q "$src" "$work/repo"
cd "$work/repo"
sed -i "s/^profile: .*/profile: $profile/" params.yaml
rm -rf results reports/ablation reports/gamma      # committed outputs: rebuild them
export DVC_NO_ANALYTICS=1
t0=$(date +%s.%N)
dvc repro > "$work/repro.log" 2>&1 || { tail -50 "$work/repro.log"; exit 1; }
t1=$(date +%s.%N)
dvc repro > "$work/noop.log" 2>&1
t2=$(date +%s.%N)
grep -c "Running stage" "$work/repro.log" | xargs printf "stages run: %s\n"
python3 -c "print(f'full dvc repro ($profile): {$t1 - $t0:.1f} s'); print(f'no-op dvc repro: {$t2 - $t1:.2f} s')"
