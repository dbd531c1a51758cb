#!/usr/bin/env bash
# GPU check of the serving benchmark (bench/serve.py), for a GPU server without internet or
# Java (e.g. an H100/H200 box that only has Python 3.12, torch and transformers).
#
#   bash bench/gpu_check.sh prepare [MODEL_DIR]   # on the build machine: builds var/gpu_kit/
#   bash bench/gpu_check.sh run                   # on the GPU server, in a copy of the repository
#   bash bench/gpu_check.sh smoke                 # prepare + run, briefly, in a temporary directory
#
# Copy var/gpu_kit/ along with the repository. Results: $OUT (default var/gpu_out)/gpu_bench.txt
# and gpu_bench.json (+ TorchServe logs). Goals there: (b) >= 50 % of (c); p50 latency of a
# single-ticket request <= 15 ms.
#
# The kit brings what such a server lacks (Java, TorchServe) and stays small enough to copy
# around (at most 62 MiB). So `prepare` packs one xz tarball holding:
#   jre/       a jlink-built Java 17 runtime with the modules TorchServe's frontend needs
#              (log4j needs java.beans, hence java.desktop)
#   site/      ts (its frontend jar re-stored uncompressed, so xz can shrink it from 41 MB to
#              about 19 MB), model_archiver, psutil (abi3 build: fine on 3.12)
#   extra/     pure-Python httpx & co, yaml, packaging: used only where the image lacks them
#   encoder/   the bundled MiniLM's config and tokenizer but NOT its 88 MB of weights: the run
#              builds a randomly initialised MiniLM-L6 two-head model of the same shapes, whose
#              forward pass costs the same; labels.json (from MODEL_DIR or the sample data)
#              gives the heads their sizes. Speed is measured, not accuracy.
#   texts.json the benchmark's tickets (the GPU image need not have pandas)
#
# Without a GPU the run step falls back to the CPU. `smoke` builds the kit and runs from it on
# this machine (its GPU, else its CPU) with SMOKE_ROWS tickets and one round, everything under a
# temporary directory that is removed afterwards: a check, in minutes, that the kit is complete.
set -euo pipefail
cd "$(dirname "$0")/.."

KIT_DIR=var/gpu_kit
KIT=$KIT_DIR/kit.tar.xz
LIMIT_BYTES=$((62 * 1024 * 1024))  # a kit that is quick to copy
JRE_MODULES=java.base,java.desktop,java.logging,java.management,java.naming,java.sql,java.xml,jdk.unsupported
EXTRA_MODULES=(httpx httpcore h11 anyio idna certifi yaml packaging typing_extensions)
ROWS=${ROWS:-512}      # tickets per round
ROUNDS=${ROUNDS:-3}
XZ_LEVEL=6             # xz preset: a small kit, quick to copy
SMOKE_ROWS=32

prepare() {
  local model_dir=${1:-}
  local py=.venv/bin/python
  local stage
  stage=$(mktemp -d)
  trap 'rm -rf "$stage"; trap - RETURN' RETURN  # once: a RETURN trap outlives its function
  mkdir -p "$stage/site" "$stage/extra" "$stage/encoder" "$KIT_DIR"

  echo "== jlink a Java 17 runtime"
  local jdk
  jdk=${JDK_HOME:-$(dirname "$(dirname "$(readlink -f "$(command -v jlink)")")")}
  "$jdk/bin/jlink" --module-path "$jdk/jmods" --add-modules "$JRE_MODULES" \
    --strip-debug --no-header-files --no-man-pages --compress=2 --output "$stage/jre"

  echo "== TorchServe, model archiver and helpers from $py"
  local site
  site=$($py -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  cp -r "$site/ts" "$site/model_archiver" "$site/psutil" "$stage/site/"
  for module in "${EXTRA_MODULES[@]}"; do
    if [ -e "$site/$module" ]; then cp -r "$site/$module" "$stage/extra/"; fi
    if [ -e "$site/$module.py" ]; then cp "$site/$module.py" "$stage/extra/"; fi
  done
  find "$stage" -name __pycache__ -prune -exec rm -rf {} +
  $py - "$stage/site/ts/frontend/model-server.jar" <<'EOF'
import os, sys, tempfile, zipfile
jar = sys.argv[1]
fd, stored = tempfile.mkstemp(dir=os.path.dirname(jar))
os.close(fd)
with zipfile.ZipFile(jar) as src, zipfile.ZipFile(stored, "w", zipfile.ZIP_STORED) as dst:
    for info in src.infolist():
        dst.writestr(info, src.read(info), compress_type=zipfile.ZIP_STORED)
os.replace(stored, jar)
EOF

  echo "== encoder config + tokenizer (no weights), labels, texts"
  local encoder
  encoder=$($py -c 'from training.encoders.base_models import bundled_minilm_path; print(bundled_minilm_path())')
  find "$encoder" -maxdepth 1 -type f \( -name '*.json' -o -name '*.txt' \) \
    -exec cp {} "$stage/encoder/" \;
  $py - "$stage" "$model_dir" "$ROWS" <<'EOF'
import json, sys
from pathlib import Path
sys.path.insert(0, "bench")
from serve import bench_texts
stage, model_dir, rows = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
if model_dir:
    labels = json.loads((Path(model_dir) / "labels.json").read_text())
else:
    from training.text.sample_data import generate_tickets
    frame = generate_tickets(600, seed=1)
    labels = {h: sorted(frame[h].unique().tolist()) for h in ("queue", "priority")}
(stage / "labels.json").write_text(json.dumps(labels))
(stage / "texts.json").write_text(json.dumps(bench_texts(rows), ensure_ascii=False))
EOF

  echo "== pack"
  tar -C "$stage" -cf - . | xz "-$XZ_LEVEL" -T2 > "$KIT.tmp"
  mv "$KIT.tmp" "$KIT"
  local size
  size=$(stat -c %s "$KIT")
  echo "$KIT: $((size / 1024 / 1024)) MiB"
  if [ "$size" -gt "$LIMIT_BYTES" ]; then
    echo "kit larger than $((LIMIT_BYTES / 1024 / 1024)) MiB" >&2
    exit 1
  fi
}

run() {
  local out=${OUT:-var/gpu_out}
  local work=${TMPDIR:-/tmp}/ticketserve-gpu
  local py=${PYTHON:-python3}
  mkdir -p "$out"
  rm -rf "$work" && mkdir -p "$work"
  [ -f "$KIT" ] || { echo "$KIT missing: run 'bash bench/gpu_check.sh prepare' and copy $KIT_DIR" >&2; exit 1; }
  tar -C "$work" -xJf "$KIT"

  export JAVA_HOME=$work/jre
  export PATH=$JAVA_HOME/bin:$PATH
  for module in "${EXTRA_MODULES[@]}"; do
    if ! $py -c "import $module" 2>/dev/null && compgen -G "$work/extra/$module*" >/dev/null; then
      echo "image lacks $module: using the kit's copy"
      cp -r "$work/extra/$module"* "$work/site/"
    fi
  done
  export PYTHONPATH=$work/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
  # TorchServe counts GPUs from CUDA_VISIBLE_DEVICES, else nvidia-smi: make sure it sees one.
  if $py -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
    export CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0}
  fi
  export TOKENIZERS_PARALLELISM=false

  {
    echo "== machine"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || echo "no nvidia-smi"
    java -version 2>&1 | head -1
    $py -c 'import sys, torch, transformers; print("python", sys.version.split()[0], "torch", torch.__version__, "transformers", transformers.__version__, "cuda", torch.cuda.is_available())'
  } 2>&1 | tee "$out/gpu_bench.txt"

  echo "== random-initialised MiniLM-L6 two-head model (same shapes as the trained one)"
  $py - "$work" <<'EOF'
import json, sys
from pathlib import Path
import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer
from training.inference.model import TicketClassifier
work = Path(sys.argv[1])
torch.manual_seed(0)
encoder = AutoModel.from_config(AutoConfig.from_pretrained(work / "encoder"))
labels = json.loads((work / "labels.json").read_text())
model = TicketClassifier(encoder, labels, dropout=0.1, max_length=256)
model.save(work / "model")
AutoTokenizer.from_pretrained(work / "encoder").save_pretrained(work / "model")
print("model:", work / "model", {h: len(n) for h, n in labels.items()})
EOF

  echo "== benchmark"
  local status=0
  $py bench/serve.py --model "$work/model" --texts "$work/texts.json" --rows "$ROWS" \
    --rounds "$ROUNDS" --workdir "$work/bench" --json "$out/gpu_bench.json" 2>&1 \
    | tee -a "$out/gpu_bench.txt" || status=$?
  cp -r "$work/bench/torchserve/logs" "$out/torchserve_logs" 2>/dev/null || true
  return "$status"
}

smoke() {
  SMOKE_DIR=$(mktemp -d)  # global: the EXIT trap runs after this function has returned
  trap 'rm -rf "$SMOKE_DIR"' EXIT
  KIT_DIR=$SMOKE_DIR/kit KIT=$SMOKE_DIR/kit/kit.tar.xz ROWS=$SMOKE_ROWS ROUNDS=1
  XZ_LEVEL=0  # a minute faster; a kit that fits at level 0 fits at 6
  prepare
  # The repository's Python stands in for the server's; TMPDIR keeps the run's work in SMOKE_DIR.
  OUT=$SMOKE_DIR/out TMPDIR=$SMOKE_DIR PYTHON=${PYTHON:-.venv/bin/python} run
}

case ${1:-} in
  prepare) shift; prepare "$@" ;;
  run) run ;;
  smoke) smoke ;;
  *) echo "usage: bash bench/gpu_check.sh prepare [MODEL_DIR] | run | smoke" >&2; exit 2 ;;
esac
