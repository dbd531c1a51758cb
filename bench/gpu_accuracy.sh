#!/usr/bin/env bash
# The training benchmarks (bench/tune.py, bench/accuracy.py, bench/train_speed.py) for a GPU
# server without internet (e.g. an H100/H200 box with torch, transformers, pandas and
# scikit-learn): a validation-only search, then the test-split comparison with the best trial.
#
#   bash bench/gpu_accuracy.sh prepare                     # build machine: var/gpu_e5/, var/gpu_minilm/
#   bash bench/gpu_accuracy.sh run e5 [TRIAL ...]          # GPU server, with var/gpu_e5 copied over
#   bash bench/gpu_accuracy.sh run minilm [TRIAL ...]      # GPU server, with var/gpu_minilm
#   bash bench/gpu_accuracy.sh smoke                       # prepare + run minilm, briefly
#
# TRIAL is bench/tune.py's "field=value,..." (default: "learning_rate=1e-4"). Results land in
# $OUT: tune_NAME.txt/.jsonl, accuracy_NAME.txt, speed_NAME.txt.
#
# `smoke` builds both kits from SMOKE_ROWS generated tickets (the dataset is not needed) and runs
# the minilm one with each benchmark's --smoke sizes (one seed, one epoch, short texts), on this
# machine's GPU or else its CPU, everything under a temporary directory that is removed
# afterwards: a check, in minutes, that the kits are complete and every step runs.
#
# Each kit is small (under 64 MiB): one encoder, stored in fp16 and turned back into fp32 on the
# server. e5 is trimmed beforehand to the fixed split's training texts (what training trims it to
# anyway). Each kit holds a gzipped copy of the benchmark dataset; var/ is git-ignored, so it is
# never committed.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/bueck_v3_4k/dataset-tickets-multi-lang3-4k.csv}
KITS=${KITS:-var}  # where the kits gpu_e5/ and gpu_minilm/ are built and read
PY=${PYTHON:-python3}  # the server's Python, for run (PYTHON=... picks another)
SMOKE_ROWS=240
# What run passes each benchmark besides the data and the encoder; smoke swaps in --smoke.
TUNE_FLAGS=(--epochs 8)
ACCURACY_FLAGS=()
SPEED_FLAGS=(--rows 800 --epochs 4)

prepare() {
  [ -f "$DATA" ] || { echo "dataset $DATA is not here (it lives in ../shared/data; set DATA=)" >&2; exit 1; }
  .venv/bin/python - "$DATA" "$KITS" <<'PY'
import gzip, shutil, sys
from pathlib import Path

sys.path.insert(0, "bench")
from common import fixed_split
from safetensors.torch import load_file, save_file

from training.encoders.base_models import bundled_minilm_path, resolve_base_model
from training.text.data import load_tickets
from training.encoders.vocab_trim import trim_vocabulary

data_path, kits = Path(sys.argv[1]), Path(sys.argv[2])
train_frame, _ = fixed_split(load_tickets(data_path))
scratch = kits / "gpu_scratch"
shutil.rmtree(scratch, ignore_errors=True)
trimmed = trim_vocabulary(
    resolve_base_model("multilingual-e5-small"), train_frame["text"], scratch / "e5"
).model_dir
for name, source in (("e5", trimmed), ("minilm", bundled_minilm_path())):
    kit = kits / f"gpu_{name}"
    shutil.rmtree(kit, ignore_errors=True)
    shutil.copytree(source, kit / "encoder")
    weights = load_file(str(kit / "encoder/model.safetensors"))
    half = {k: v.half() if v.is_floating_point() else v for k, v in weights.items()}
    save_file(half, str(kit / "encoder/model.safetensors"), metadata={"format": "pt"})
    with gzip.open(kit / "data.csv.gz", "wb") as out:
        out.write(data_path.read_bytes())
    size = sum(f.stat().st_size for f in kit.rglob("*") if f.is_file())
    print(f"{kit}: {size / 2**20:.1f} MiB")
shutil.rmtree(scratch)
PY
}

run() {
  local name=$1 work=${TMPDIR:-/tmp}/gpu_$1
  shift
  local trials=("$@")
  [ ${#trials[@]} -gt 0 ] || trials=("learning_rate=1e-4")
  export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
  mkdir -p "$work" "${OUT:=$work/out}"
  gunzip -c "$KITS/gpu_$name/data.csv.gz" >"$work/data.csv"
  $PY - "$KITS/gpu_$name/encoder" "$work/encoder" <<'PY'
import shutil, sys
from safetensors.torch import load_file, save_file
source, target = sys.argv[1:]
shutil.copytree(source, target, dirs_exist_ok=True)
weights = load_file(f"{source}/model.safetensors")
full = {k: v.float() if v.is_floating_point() else v for k, v in weights.items()}
save_file(full, f"{target}/model.safetensors", metadata={"format": "pt"})
PY
  nvidia-smi --query-gpu=name --format=csv,noheader || true
  local args=()
  for t in "${trials[@]}"; do args+=(--trial "$t"); done
  $PY bench/tune.py "$work/data.csv" --base-model "$work/encoder" "${TUNE_FLAGS[@]}" \
    "${args[@]}" --log "$OUT/tune_$name.jsonl" 2>&1 | grep -v "Loading weights" |
    tee "$OUT/tune_$name.txt"
  local best
  best=$($PY - "$OUT/tune_$name.jsonl" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
config = max(rows, key=lambda r: r["mean"])["config"]
flags = []
for key, value in config.items():
    flag = key.replace("_", "-")
    if isinstance(value, bool):
        flags.append(f"--{flag}" if value else f"--no-{flag}")
    elif isinstance(value, int | float | str) and key != "num_threads":
        flags.append(f"--{flag}={value}")
print(" ".join(flags))
PY
  )
  echo "best by validation: $best"
  # shellcheck disable=SC2086  # $best is a list of flags
  $PY bench/accuracy.py "$work/data.csv" $best "${ACCURACY_FLAGS[@]}" 2>&1 |
    grep -v "Loading weights\|training:" | tee "$OUT/accuracy_$name.txt"
  $PY bench/train_speed.py "$work/data.csv" "${SPEED_FLAGS[@]}" --base-model "$work/encoder" \
    2>&1 | grep -v "Loading weights" | tee "$OUT/speed_$name.txt"
}

smoke() {
  SMOKE_DIR=$(mktemp -d)  # global: the EXIT trap runs after this function has returned
  trap 'rm -rf "$SMOKE_DIR"' EXIT
  DATA=$SMOKE_DIR/tickets.csv KITS=$SMOKE_DIR/kits
  .venv/bin/python -c 'import sys; from training.text.sample_data import write_sample_csv
write_sample_csv(sys.argv[1], int(sys.argv[2]))' "$DATA" "$SMOKE_ROWS"
  prepare
  TUNE_FLAGS=(--smoke) ACCURACY_FLAGS=(--smoke) SPEED_FLAGS=(--smoke)
  PY=${PYTHON:-.venv/bin/python}  # the repository's Python stands in for the server's
  OUT=$SMOKE_DIR/out TMPDIR=$SMOKE_DIR run minilm  # TMPDIR: the run's work stays in SMOKE_DIR
}

case ${1:-} in
  prepare) prepare ;;
  run) shift; run "$@" ;;
  smoke) smoke ;;
  *) echo "usage: $0 prepare | run e5|minilm [TRIAL ...] | smoke" >&2; exit 2 ;;
esac
