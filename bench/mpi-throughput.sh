#!/usr/bin/env bash
# Data-parallel throughput on this machine: the demo's `qformer-lora-all` LoRA run (tiny InstructBLIP, synthetic
# ScienceQA, 600 training examples) as 1 process × 2 threads against `mpirun -np 2` × 1 thread, with the same global
# batch (batch_size 8 × gradient_accumulation 2 = 16: one micro-batch per rank per step) and the same math.
#   bash bench/mpi-throughput.sh [EPOCHS=3]
# Prints the median training samples/s of each (from metrics.jsonl: training steps only, not validation) and the
# all-reduce time per optimizer step of the MPI run.
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=${1:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
./vlpeft data synth --task scienceqa --out "$work/sqa" --seed 1 > /dev/null
sed -e "s/epochs: 8/epochs: $epochs/" -e "s/batch_size: 16/batch_size: 8\n  gradient_accumulation: 2/" -e "s/patience: 3/patience: null/" \
  configs/demo/qformer-lora-all.yaml > "$work/run.yaml"
exe=src/VlPeft.Cli/bin/Release/net10.0/VlPeft.Cli
args=(train --config "$work/run.yaml" --data "$work/sqa" --model models/tiny-instructblip)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

start=$(date +%s.%N); OMP_NUM_THREADS=2 $exe "${args[@]}" --out "$work/one" > /dev/null 2>&1; one_s=$(echo "$(date +%s.%N) - $start" | bc)
start=$(date +%s.%N); OMP_NUM_THREADS=1 mpirun -x OMP_NUM_THREADS --bind-to core -np 2 $exe "${args[@]}" --out "$work/two" > /dev/null 2>&1; two_s=$(echo "$(date +%s.%N) - $start" | bc)

summary() { # $1 = metrics.jsonl, $2 = field
  python3 -c "
import json, statistics, sys
values = [json.loads(l).get('$2') for l in open('$1')]
values = [v for v in values if v is not None][1:]   # the first log of the run includes warm-up
print(f'{statistics.median(values):.1f}')"
}
echo "1 process × 2 threads: $(summary "$work/one/metrics.jsonl" samples_per_second) training samples/s; whole command ${one_s%.*} s"
echo "2 ranks × 1 thread:    $(summary "$work/two/metrics.jsonl" samples_per_second) training samples/s; whole command ${two_s%.*} s; all-reduce $(summary "$work/two/metrics.jsonl" allreduce_ms) ms per optimizer step"
python3 - "$work" <<'PY'
import json, struct, sys
def tensors(p):
    b = open(p, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n]); return sum((v['data_offsets'][1] - v['data_offsets'][0]) for k, v in h.items() if k != '__metadata__')
print(f"all-reduce message: {tensors(sys.argv[1] + '/one/adapter/adapter_model.safetensors') // 4:,} fp32 gradients per step")
PY
