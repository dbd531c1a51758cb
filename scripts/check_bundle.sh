#!/usr/bin/env bash
# Proves an offline bundle: install it into a fresh virtualenv with every package index disabled,
# then, from outside the repository, train with the CLI and serve through the API (TorchServe,
# upload, training job, classify). Usage: scripts/check_bundle.sh dist/ticketserve-*-offline.tar
set -euo pipefail
TAR=$(realpath "${1:?usage: check_bundle.sh BUNDLE.tar}")
WORK=$(mktemp -d)
SERVICE=
cleanup() {
  [ -n "$SERVICE" ] && kill -TERM "$SERVICE" 2>/dev/null && wait "$SERVICE" || true
  rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"
tar -xf "$TAR"
echo "== install offline"
start=$(date +%s)
PIP_NO_INDEX=1 ./ticketserve-*-offline/install.sh "$WORK/venv"
echo "installed in $(( $(date +%s) - start )) s"
TS=$WORK/venv/bin/ticketserve
PY=$WORK/venv/bin/python
# the code that runs is the installed one, not a checkout's
$PY -c 'import shim, sys; assert "site-packages" in shim.__file__, shim.__file__'

echo "== train with the CLI"
$TS sample-data tickets.csv --rows 150 --seed 4
TICKETSERVE_CACHE=$WORK/cache $TS train tickets.csv --out model --mode fast \
  --base-model all-MiniLM-L6-v2 --max-length 64 >/dev/null
$TS predict model "Mein Drucker druckt nicht mehr"

echo "== serve: TorchServe + API, upload, train, classify"
PORT=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE=http://127.0.0.1:$PORT
TICKETSERVE_CACHE=$WORK/cache $TS serve --port "$PORT" --data-dir data >serve.log 2>&1 &
SERVICE=$!
for _ in $(seq 1 240); do curl -sf "$BASE/healthz" >/dev/null && break; sleep 1; done
curl -sf "$BASE/healthz" >/dev/null || { tail -30 serve.log; exit 1; }
# The web console's files came with the wheel.
curl -sf "$BASE/" -o console.html
grep -q "ticketserve console" console.html
curl -sf "$BASE/console/console.js" >/dev/null
curl -sf -X POST "$BASE/api/v1/train-data" -H 'Content-Type: text/csv' --data-binary @tickets.csv >/dev/null
JOB=$(curl -sf -X POST "$BASE/api/v1/train" -H 'Content-Type: application/json' \
  -d '{"mode": "fast", "base_model": "all-MiniLM-L6-v2", "max_length": 64}' \
  | $PY -c 'import json, sys; print(json.load(sys.stdin)["job_id"])')
for _ in $(seq 1 600); do
  STATUS=$(curl -sf "$BASE/api/v1/train/$JOB" | $PY -c 'import json, sys; print(json.load(sys.stdin)["status"])')
  case $STATUS in succeeded) break ;; failed|cancelled) tail -30 serve.log; exit 1 ;; esac
  sleep 1
done
for _ in $(seq 1 120); do curl -sf "$BASE/readyz" >/dev/null && break; sleep 1; done
ANSWER=$(curl -sf -X POST "$BASE/api/v1/classify" -H 'Content-Type: application/json' \
  -d '{"ticket_data": "VPN drops every few minutes"}')
echo "$ANSWER" | $PY -c 'import json, sys; a = json.load(sys.stdin); assert a["model_version"] == 1, a; print("classified:", a["predicted_label"])'
echo "bundle OK"
