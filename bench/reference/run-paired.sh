#!/usr/bin/env bash
# Paired Q-Former LoRA step: VlPeft (bench qformer-step) against its PyTorch peer (qformer_step.py), interleaved.
#   bash bench/reference/run-paired.sh [PAIRS=5] [STEPS=8]
# Installs the peer from Debian (python3-torch 1.13, OpenBLAS openmp, tcmalloc) when missing and switches the system
# BLAS to OpenBLAS (Debian's torch is built against the generic libblas.so.3, which is the slow reference BLAS unless
# switched). The peer runs under tcmalloc; VlPeft runs as shipped (glibc malloc). Each pair runs every case on both
# sides, the side that goes first alternating, so drift on the machine hits both. Prints each pair's ratio
# (VlPeft steps/s ÷ PyTorch steps/s) and min/median/max per case; raw JSON lines go to bench/reference/results.jsonl.
set -euo pipefail
cd "$(dirname "$0")/../.."
pairs=${1:-5}
steps=${2:-8}
py=/usr/bin/python3
tcmalloc=/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4

if ! $py -c "import torch" 2>/dev/null || [ ! -e $tcmalloc ] || [ ! -e /usr/lib/x86_64-linux-gnu/openblas-openmp/libblas.so.3 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-torch libopenblas0-openmp libgoogle-perftools4 >/dev/null
fi
update-alternatives --set libblas.so.3-x86_64-linux-gnu /usr/lib/x86_64-linux-gnu/openblas-openmp/libblas.so.3 >/dev/null
update-alternatives --set liblapack.so.3-x86_64-linux-gnu /usr/lib/x86_64-linux-gnu/openblas-openmp/liblapack.so.3 >/dev/null

dotnet build -c Release bench/VlPeft.Bench -v q -nologo >/dev/null
vlpeft() { dotnet run -c Release --no-build --project bench/VlPeft.Bench -- qformer-step "$steps" "$1" "$2" | tail -1; }
peer() { LD_PRELOAD=$tcmalloc OMP_NUM_THREADS=2 $py bench/reference/qformer_step.py --steps "$steps" --dtype "$1" --text "$2" | tail -1; }

out=bench/reference/results.jsonl
: > $out
echo "PyTorch peer: $(LD_PRELOAD=$tcmalloc $py bench/reference/qformer_step.py --peak)"
dotnet run -c Release --no-build --project bench/VlPeft.Bench -- qformer-step peak
for pair in $(seq 1 "$pairs"); do
  for case in "fp32 0" "fp32 16" "bf16 0" "bf16 16"; do
    if (( pair % 2 )); then a=$(vlpeft $case); b=$(peer $case); else b=$(peer $case); a=$(vlpeft $case); fi
    echo "{\"pair\": $pair, \"vlpeft\": $a, \"pytorch\": $b}" >> $out
  done
done

$py - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
cases = {}
for r in rows:
    key = (r["vlpeft"]["dtype"], r["vlpeft"]["text"])
    cases.setdefault(key, []).append(r)
print(f"{'case':<18}{'VlPeft steps/s':>16}{'PyTorch steps/s':>17}{'needed GFLOP/s':>16}   per-pair ratios → min / median / max")
for (dtype, text), rs in cases.items():
    ratios = [r["vlpeft"]["steps_per_s"] / r["pytorch"]["steps_per_s"] for r in rs]
    v = statistics.median(r["vlpeft"]["steps_per_s"] for r in rs)
    p = statistics.median(r["pytorch"]["steps_per_s"] for r in rs)
    gflop = rs[0]["vlpeft"]["needed_gflop"]
    print(f"{dtype + ', ' + str(text) + ' text':<18}{v:>16.3f}{p:>17.3f}{gflop * v:>8.1f} /{gflop * p:>6.1f}   {' '.join(f'{x:.2f}' for x in ratios)} → "
          f"{min(ratios):.2f} / {statistics.median(ratios):.2f} / {max(ratios):.2f}")
PY
