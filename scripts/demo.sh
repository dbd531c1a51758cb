#!/usr/bin/env bash
# The tutorial end to end through the /api/v1 service: generate tickets, start the service
# (TorchServe + API), upload, train with live progress, classify English and German tickets,
# stop everything. Starts from a clean $VAR/demo each time; about 5 minutes on 2 CPU cores.
# DEMO_ROWS, DEMO_TRAIN (JSON hyper-parameters) and PORT change the defaults below.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
WORK=${VAR:-var}/demo
ROWS=${DEMO_ROWS:-600}
# The defaults: mode auto (fast on a CPU: the frozen multilingual-e5-small plus the lexical
# branch, heads fitted in seconds, confidences calibrated, the auto-routing gate at 90 % precision).
TRAIN=${DEMO_TRAIN:-'{}'}
PORT=${PORT:-$($BIN/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
BASE=http://127.0.0.1:$PORT
JSON=(-H 'Content-Type: application/json')

rm -rf "$WORK"
mkdir -p "$WORK"

echo "== 1. sample data: $ROWS generated English and German tickets"
$BIN/ticketserve sample-data "$WORK/tickets.csv" --rows "$ROWS" --seed 7

echo "== 2. start the service on $BASE (TorchServe first; log: $WORK/service.log)"
# A queue answer below its gate (the confidence that reached 90 % precision on validation)
# becomes "Unclassified"; the model's guess stays in model_label.
$BIN/ticketserve serve --port "$PORT" --data-dir "$WORK" >"$WORK/service.log" 2>&1 &
SERVICE=$!
stop_service() {
  if kill -0 "$SERVICE" 2>/dev/null; then
    echo "== stopping the service"
    kill -TERM "$SERVICE"
    wait "$SERVICE" || true
  fi
}
trap stop_service EXIT
for _ in $(seq 1 240); do
  curl -sf "$BASE/healthz" >/dev/null && break
  kill -0 "$SERVICE" 2>/dev/null || { echo "the service exited:"; tail -20 "$WORK/service.log"; exit 1; }
  sleep 1
done
curl -sf "$BASE/healthz" >/dev/null || { echo "the service did not start"; exit 1; }

echo "== 3. upload: POST /api/v1/train-data (text/csv)"
curl -sS --fail-with-body -X POST "$BASE/api/v1/train-data" -H 'Content-Type: text/csv' \
  --data-binary @"$WORK/tickets.csv" -o "$WORK/upload.json"
$BIN/python - "$WORK/upload.json" <<'PY'
import json, sys

r = json.load(open(sys.argv[1]))
print(f"accepted {r['rows_accepted']} of {r['rows_read']} rows, rejected {r['rows_rejected']}")
for head, counts in r["label_counts"].items():
    print(f"  {head}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
PY

echo "== 4. train: POST /api/v1/train $TRAIN"
JOB=$(curl -sS --fail-with-body -X POST "$BASE/api/v1/train" "${JSON[@]}" -d "$TRAIN" \
  | $BIN/python -c 'import json, sys; print(json.load(sys.stdin)["job_id"])')
$BIN/python - "$BASE" "$JOB" <<'PY'
import json, sys, time, urllib.request

base, job_id = sys.argv[1], sys.argv[2]
shown, shown_at = None, 0.0
while True:
    with urllib.request.urlopen(f"{base}/api/v1/train/{job_id}") as answer:
        job = json.load(answer)
    p = job["progress"] or {}
    state = (job["status"], job["phase"], job["mode"], p.get("stage"), p.get("epoch"))
    # A line per phase, stage or epoch, and every 10 seconds in between.
    if state != shown or time.monotonic() - shown_at >= 10:
        line = f"  job {job_id}: {job['status']:<9} {job['phase']:<13}"
        if job["mode"]:
            line += f" mode {job['mode']}"
        if p:
            line += f"  {p['stage']} {p['step']}/{p['total_steps']}"
            if p["loss"] is not None:
                line += f" (epoch {p['epoch']}/{p['epochs']}, loss {p['loss']:.3f})"
        if job["eta_s"] is not None and job["status"] == "running":
            line += f"  ETA {job['eta_s']:.0f}s"
        print(line, flush=True)
        shown, shown_at = state, time.monotonic()
    if job["status"] in ("succeeded", "failed"):
        break
    time.sleep(1)
if job["status"] == "failed":
    sys.exit(f"training failed: {job['error']}")
m = job["metrics"]
print(f"  version {job['model_version']}: validation macro-F1 {m['validation_macro_f1']:.3f}, "
      f"test macro-F1 {m['test_macro_f1']:.3f} ({m['train_seconds']}s)")
for head, t in m["test"].items():
    gate = t.get("gate") or {}
    routed = (f"{gate['coverage']:.0%} of test tickets clear the gate at precision "
              f"{gate['precision']:.2f}" if gate.get("precision") is not None else "none routed")
    print(f"  {head}: ECE {t['ece_uncalibrated']:.3f} before, {t['ece']:.3f} after calibration;"
          f" {routed}")
print(f"  {job['note']}")
PY
for _ in $(seq 1 120); do
  curl -sf "$BASE/readyz" >/dev/null && break
  sleep 1
done

echo "== 5. classify: POST /api/v1/classify {\"ticket_data\": ...}"
curl -sS --fail-with-body -X POST "$BASE/api/v1/classify" "${JSON[@]}" \
  -d '{"ticket_data": "My printer is broken"}'
echo
$BIN/python - "$BASE" <<'PY'
import json, sys, urllib.request

tickets = [
    "Mein Drucker druckt seit dem Update nicht mehr",
    "URGENT: the whole sales team cannot log in to the CRM since this morning",
    "Could you send me a quote for 20 additional licences? No rush.",
    "Ich wurde für die Rechnung RE-2291 doppelt belastet, bitte um Erstattung.",
    "The laptop I ordered arrived with a cracked screen, I want to return it",
    "Wie viele Urlaubstage habe ich dieses Jahr noch übrig?",
]
body = json.dumps({"tickets": [{"ticket_data": t} for t in tickets]}).encode()
request = urllib.request.Request(
    f"{sys.argv[1]}/api/v1/classify", body, {"Content-Type": "application/json"}
)
with urllib.request.urlopen(request) as answer:
    result = json.load(answer)
print(f"model version {result['model_version']}:")
def gate(head):
    return "auto_route" if head["auto_route"] else "to a human"

for text, p in zip(tickets, result["predictions"]):
    queue, priority = p["queue"], p["priority"]
    guess = f" (model: {queue['model_label']})" if queue["low_confidence"] else ""
    print(f"  {text}\n    queue    {queue['label']} {queue['confidence']:.2f}{guess} [{gate(queue)}]"
          f"\n    priority {priority['label']} {priority['confidence']:.2f} [{gate(priority)}]")
PY

echo "== 6. versions: GET /api/v1/models"
curl -sS --fail-with-body "$BASE/api/v1/models" -o "$WORK/models.json"
$BIN/python - "$WORK/models.json" <<'PY'
import json, sys

for v in json.load(open(sys.argv[1]))["versions"]:
    default = " (default)" if v["is_default"] else ""
    print(f"  version {v['version']}{default}: {v['data_rows']} tickets, "
          f"validation macro-F1 {v['validation_macro_f1']:.3f}")
PY
echo "== done (OpenAPI docs were at $BASE/docs; run the service yourself with: make serve)"
