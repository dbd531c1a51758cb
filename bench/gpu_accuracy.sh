#!/usr/bin/env bash
# The training benchmarks (bench/tune.py, bench/accuracy.py, bench/train_speed.py) for a GPU
# server without internet (e.g. an H100/H200 box with torch, transformers, pandas and
# scikit-learn): a validation-only search, then the test-split comparison with the best trial.
#
#   bash bench/gpu_accuracy.sh prepare                     # build machine: var/gpu_e5/, var/gpu_minilm/
#   bash bench/gpu_accuracy.sh run e5 [TRIAL ...]          # GPU server, with var/gpu_e5 copied over
#   bash bench/gpu_accuracy.sh run minilm [TRIAL ...]      # GPU server, with var/gpu_minilm
#
# TRIAL is bench/tune.py's "field=value,..." (default: "learning_rate=1e-4"). Results land in
# $OUT: tune_NAME.txt/.jsonl, accuracy_NAME.txt, speed_NAME.txt.
#
# Each kit is small (under 64 MiB): one encoder, stored in fp16 and turned back into fp32 on the
# server. e5 is trimmed beforehand to the fixed split's training texts (what training trims it to
# anyway). Each kit holds a gzipped copy of the benchmark dataset; var/ is git-ignored, so it is
# never committed.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/bueck_v3_4k/dataset-tickets-multi-lang3-4k.csv}

prepare() {
  [ -f "$DATA" ] || { echo "dataset $DATA is not here (it lives in ../shared/data; set DATA=)" >&2; exit 1; }
  .venv/bin/python - "$DATA" <<'PY'
import gzip, shutil, sys
from pathlib import Path

sys.path.insert(0, "bench")
from common import fixed_split
from safetensors.torch import load_file, save_file

from training.base_models import bundled_minilm_path, resolve_base_model
from training.data import load_tickets
from training.vocab_trim import trim_vocabulary

data_path = Path(sys.argv[1])
train_frame, _ = fixed_split(load_tickets(data_path))
scratch = Path("var/gpu_scratch")
shutil.rmtree(scratch, ignore_errors=True)
trimmed = trim_vocabulary(
    resolve_base_model("multilingual-e5-small"), train_frame["text"], scratch / "e5"
).model_dir
for name, source in (("e5", trimmed), ("minilm", bundled_minilm_path())):
    kit = Path(f"var/gpu_{name}")
    shutil.rmtree(kit, ignore_errors=True)
    shutil.copytree(source, kit / "encoder")
    weights = load_file(str(kit / "encoder/model.safetensors"))
    half = {k: v.half() if v.is_floating_point() else v for k, v in weights.items()}
    save_file(half, str(kit / "encoder/model.safetensors"), metadata={"format": "pt"})
    with gzip.open(kit / "data.csv.gz", "wb") as out:
        out.write(data_path.read_bytes())
    size = sum(f.stat().st_size for f in kit.rglob("*") if f.is_file())
    print(f"var/gpu_{name}: {size / 2**20:.1f} MiB")
shutil.rmtree(scratch)
PY
}

run() {
  local name=$1 work=/tmp/gpu_$1
  shift
  local trials=("$@")
  [ ${#trials[@]} -gt 0 ] || trials=("learning_rate=1e-4")
  export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
  mkdir -p "$work" "${OUT:=$work/out}"
  gunzip -c "var/gpu_$name/data.csv.gz" >"$work/data.csv"
  python3 - "var/gpu_$name/encoder" "$work/encoder" <<'PY'
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
  python3 bench/tune.py "$work/data.csv" --base-model "$work/encoder" --epochs 8 \
    "${args[@]}" --log "$OUT/tune_$name.jsonl" 2>&1 | grep -v "Loading weights" |
    tee "$OUT/tune_$name.txt"
  local best
  best=$(python3 - "$OUT/tune_$name.jsonl" <<'PY'
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
  python3 bench/accuracy.py "$work/data.csv" $best 2>&1 | grep -v "Loading weights\|training:" |
    tee "$OUT/accuracy_$name.txt"
  python3 bench/train_speed.py "$work/data.csv" --rows 800 --epochs 4 --base-model "$work/encoder" \
    2>&1 | grep -v "Loading weights" | tee "$OUT/speed_$name.txt"
}

case ${1:-} in
  prepare) prepare ;;
  run) shift; run "$@" ;;
  *) echo "usage: $0 prepare | run e5|minilm [TRIAL ...]" >&2; exit 2 ;;
esac
