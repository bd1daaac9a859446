#!/usr/bin/env bash
# GPU readiness: the CUDA path end to end, timed, written to benchmarks/results/gpu.md.
#
#   bash benchmarks/gpu.sh                  # on a machine with an NVIDIA GPU (~5-10 min)
#   bash benchmarks/gpu.sh --cpu-dry-run    # the same steps, tiny, on CPU: checks the script itself
#
# Steps: a synthetic dataset; training with AMP (bf16 where the GPU has it, else fp16 + GradScaler)
# and channels_last; once more with --compile; DDP with NCCL under torchrun on 1 GPU (and on 2 when
# there are 2); feature-cache extraction (frozen backbone, --cache auto, pinned memory); evaluate;
# predict; stream of 1 and 4 sources; the `cnnlstm extract` command when it exists. Every step
# runs even when an earlier one failed (one GPU session should show every failure, not the first): a
# failed step's row says FAILED with the last line of its log, the logs are kept, and the script exits 1
# at the end. Results: a table of
# wall times and the last lines of each step's log, the GPU (nvidia-smi), torch/CUDA versions.
#
# Environment: PYTHON (default: .venv/bin/python if present, else python), OUT (default: benchmarks/results/gpu.md, dry run:
# benchmarks/results/gpu_cpu_dry_run.md), WORK (default: a temp folder, removed at the end).
set -euo pipefail

DRY=0
for arg in "$@"; do
  case "$arg" in
    --cpu-dry-run) DRY=1 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "gpu.sh: unknown argument '$arg' (expected --cpu-dry-run or nothing)" >&2; exit 2 ;;
  esac
done

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
if [ -z "${PYTHON:-}" ]; then  # the project's .venv (make install) when there is one
  if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python; fi
fi
CNNLSTM=("$PYTHON" -m cnnlstm.cli)
if [ "$DRY" = 1 ]; then
  OUT="${OUT:-$ROOT/benchmarks/results/gpu_cpu_dry_run.md}"
else
  OUT="${OUT:-$ROOT/benchmarks/results/gpu.md}"
fi

# --- fail fast without a GPU ---------------------------------------------------------------------
if [ "$DRY" = 0 ]; then
  if ! command -v nvidia-smi >/dev/null 2>&1; then
    echo "gpu.sh: no GPU here (nvidia-smi not found). Run it on a machine with an NVIDIA GPU and its driver," \
         "or check the script on CPU with: bash benchmarks/gpu.sh --cpu-dry-run" >&2
    exit 2
  fi
  if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu.sh: nvidia-smi works but torch.cuda.is_available() is False ($("$PYTHON" -c \
         'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda)')). Install a CUDA build of" \
         "torch matching the driver, or check the script on CPU with --cpu-dry-run" >&2
    exit 2
  fi
  NGPU="$(nvidia-smi --query-gpu=name --format=csv,noheader | wc -l)"
  DEVICE=cuda; BACKBONE=resnet18; SIZE=112; FRAMES=16; EPOCHS=2; BATCH=32; PER_CLASS=24; VSIZE=128
else
  NGPU=0
  DEVICE=cpu; BACKBONE=test_tiny; SIZE=32; FRAMES=6; EPOCHS=1; BATCH=4; PER_CLASS=2; VSIZE=32
fi

WORK="${WORK:-$(mktemp -d -t cnnlstm-gpu-XXXXXX)}"
KEEP_WORK="${KEEP_WORK:-0}"
cleanup() { [ "$KEEP_WORK" = 1 ] || rm -rf "$WORK"; }
trap cleanup EXIT
mkdir -p "$WORK/logs" "$(dirname "$OUT")"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
ROWS=()

# step NAME COMMAND...: run, time, keep the log; a failure is recorded and the script goes on
FAILED=()
step() {
  local name="$1"; shift
  local log="$WORK/logs/$name.log" start end status=ok
  echo "== $name: $*" >&2
  start=$(date +%s.%N)
  if ! "$@" >"$log" 2>&1; then
    echo "gpu.sh: step '$name' failed; its log ($log):" >&2
    tail -n 40 "$log" >&2
    KEEP_WORK=1
    FAILED+=("$name")
    status=FAILED
  fi
  end=$(date +%s.%N)
  local secs; secs=$(awk "BEGIN {printf \"%.1f\", $end - $start}")
  local last; last=$(grep -v '^\s*$' "$log" | tail -n 1 | cut -c1-160 | tr '|' '/')
  local cmd="$*"; cmd="${cmd//$WORK/\$WORK}"; cmd="${cmd//$PYTHON -m cnnlstm.cli/cnnlstm}"; cmd="${cmd//$PYTHON/python}"
  [ "$status" = ok ] || secs="$secs FAILED"
  ROWS+=("| $name | $secs | \`$cmd\` | $last |")
  echo "   $secs s" >&2
}

DATA="$WORK/data"
COMMON=(--data "$DATA/train.csv" --val "$DATA/test.csv" --backbone "$BACKBONE" --size "$SIZE" --frames "$FRAMES"
        --epochs "$EPOCHS" --batch-size "$BATCH" --device "$DEVICE" --channels-last true --progress false
        --workers 4 --seed 0)
AMP=auto   # bf16 on GPUs that support it (Ampere and later), fp16 + GradScaler otherwise

step synth "${CNNLSTM[@]}" synth "$DATA" --videos-per-class "$PER_CLASS" --test-per-class 2 --size "$VSIZE" --quiet
step train_amp "${CNNLSTM[@]}" train "${COMMON[@]}" --out "$WORK/runs/amp" --precision "$AMP" --schedule full \
     --cache off
step train_fp32 "${CNNLSTM[@]}" train "${COMMON[@]}" --out "$WORK/runs/fp32" --precision fp32 --schedule full \
     --cache off
step train_compile "${CNNLSTM[@]}" train "${COMMON[@]}" --out "$WORK/runs/compile" --precision "$AMP" \
     --schedule full --cache off --compile true --epochs 1
step extract_cache "${CNNLSTM[@]}" train "${COMMON[@]}" --out "$WORK/runs/frozen" --precision "$AMP" \
     --schedule frozen --cache auto
# cnnlstm train joins a process group only when WORLD_SIZE > 1, so on one GPU this script checks NCCL and DDP
# directly: a process group over NCCL, DistributedDataParallel(cnn_lstm), AMP steps, an all_reduce.
cat > "$WORK/ddp_check.py" <<'PY'
import os, time, torch, torch.distributed as dist
from cnnlstm import create_model
backend = os.environ["DDP_BACKEND"]
dist.init_process_group(backend=backend)
rank = dist.get_rank()
device = torch.device(f"cuda:{int(os.environ['LOCAL_RANK'])}") if backend == "nccl" else torch.device("cpu")
if device.type == "cuda":
    torch.cuda.set_device(device)
model = create_model("cnn_lstm", num_classes=6, backbone=os.environ["BACKBONE"]).to(device)
model.encoder.to(memory_format=torch.channels_last)
ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
opt = torch.optim.AdamW(ddp.parameters(), lr=1e-4)
size = int(os.environ["SIZE"])
clips = torch.randn(4, 8, 3, size, size, device=device)  # (B, T, C, H, W)
labels = torch.arange(4, device=device) % 6
amp = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float16
start = time.perf_counter()
for _ in range(5):
    with torch.autocast(device.type, dtype=amp, enabled=device.type == "cuda"):
        loss = torch.nn.functional.cross_entropy(ddp(clips).logits.float(), labels)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
total = torch.tensor([1.0], device=device)
dist.all_reduce(total)
if device.type == "cuda":
    torch.cuda.synchronize()
print(f"rank {rank}: {backend} world {dist.get_world_size()} all_reduce {total.item():g}, 5 DDP steps "
      f"{time.perf_counter() - start:.2f} s, loss {loss.item():.3f}")
dist.destroy_process_group()
PY
if [ "$DRY" = 0 ]; then
  step ddp_nccl_1gpu env DDP_BACKEND=nccl BACKBONE="$BACKBONE" SIZE="$SIZE" "$PYTHON" -m torch.distributed.run \
       --standalone --nproc_per_node 1 "$WORK/ddp_check.py"
  step train_torchrun_1gpu "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node 1 -m cnnlstm.cli train \
       "${COMMON[@]}" --out "$WORK/runs/ddp1" --precision "$AMP" --schedule full --cache off
  if [ "$NGPU" -ge 2 ]; then
    step ddp_nccl_2gpu "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node 2 -m cnnlstm.cli train \
         "${COMMON[@]}" --out "$WORK/runs/ddp2" --precision "$AMP" --schedule full --cache off
  fi
else  # gloo on CPU: the same launcher and code path, without NCCL
  step ddp_gloo_cpu env DDP_BACKEND=gloo BACKBONE="$BACKBONE" SIZE="$SIZE" "$PYTHON" -m torch.distributed.run \
       --standalone --nproc_per_node 1 "$WORK/ddp_check.py"
  step train_torchrun_cpu "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node 1 -m cnnlstm.cli train \
       "${COMMON[@]}" --out "$WORK/runs/ddp1" --precision fp32 --schedule full --cache off
fi
step evaluate "${CNNLSTM[@]}" evaluate "$WORK/runs/amp" --data "$DATA/test.csv" --json
mapfile -t VIDEOS < <(find "$DATA/videos" -type f | sort | head -n 4)
step predict "${CNNLSTM[@]}" predict "$WORK/runs/amp" "${VIDEOS[@]}" --json
step stream_1 "${CNNLSTM[@]}" stream "$WORK/runs/amp" "${VIDEOS[0]}" --json --device "$DEVICE" --threads 0
step stream_4 "${CNNLSTM[@]}" stream "$WORK/runs/amp" "${VIDEOS[@]}" --json --device "$DEVICE" --threads 0
step stream_4_bf16 "${CNNLSTM[@]}" stream "$WORK/runs/amp" "${VIDEOS[@]}" --json --device "$DEVICE" --threads 0 \
     --precision auto
# `cnnlstm extract`: per-frame features of the videos from the frozen run's encoder, in bf16.
if "${CNNLSTM[@]}" extract --help >/dev/null 2>&1; then
  step extract_cmd "${CNNLSTM[@]}" extract "${VIDEOS[@]}" --run "$WORK/runs/frozen" --out "$WORK/features" \
       --device "$DEVICE" --dtype bfloat16
else
  ROWS+=("| extract_cmd | skipped | \`cnnlstm extract\` | not in this checkout: enable the marked line in gpu.sh |")
fi

# --- results ---------------------------------------------------------------------------------------
{
  echo "# GPU readiness (benchmarks/gpu.sh$([ "$DRY" = 1 ] && echo ' --cpu-dry-run'))"
  echo
  echo "Run: $(date -u '+%Y-%m-%d %H:%M UTC') on $(hostname), $(nproc --all) CPU cores."
  if [ "$DRY" = 0 ]; then
    echo
    echo '```'
    nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv
    echo '```'
  else
    echo "CPU dry run: the same steps, tiny ($BACKBONE at $SIZE px), on CPU; DDP with gloo instead of NCCL."
  fi
  echo
  "$PYTHON" -c "import torch, platform; print(f'Python {platform.python_version()}, torch {torch.__version__}, ' \
f'CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, bf16 on the GPU: ' \
f'{torch.cuda.is_available() and torch.cuda.is_bf16_supported()}')"
  echo
  echo "Settings: $BACKBONE at $SIZE px, $FRAMES frames, batch $BATCH, $EPOCHS epoch(s), $PER_CLASS videos per class" \
       "(6 classes), $VSIZE px videos, device $DEVICE, precision $AMP for the AMP runs, channels_last."
  echo
  echo "| step | wall s | command | last line of its log |"
  echo "|---|---|---|---|"
  printf '%s\n' "${ROWS[@]}"
  echo
  echo "Wall times include process start-up (importing torch, CUDA context, cuDNN autotuning)."
} > "$OUT"
echo "wrote $OUT" >&2
if [ "${#FAILED[@]}" -gt 0 ]; then
  echo "gpu.sh: failed steps: ${FAILED[*]}; their logs are kept in $WORK/logs" >&2
  exit 1
fi
