#!/usr/bin/env bash
# The main job end to end: generate tickets, fine-tune, classify a few new ones.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
WORK=${VAR:-var}/demo
mkdir -p "$WORK"

echo "== 1. sample data"
$BIN/ticketserve sample-data "$WORK/tickets.csv" --rows 600 --seed 7

echo "== 2. train (bundled MiniLM encoder, 3 epochs)"
$BIN/ticketserve train "$WORK/tickets.csv" --out "$WORK/model" --epochs 3 --max-length 128

echo "== 3. classify"
$BIN/ticketserve predict "$WORK/model" \
  "Mein Drucker druckt seit dem Update nicht mehr" \
  "URGENT: the whole sales team cannot log in to the CRM since this morning" \
  "Could you send me a quote for 20 additional licences? No rush." \
  "Ich wurde für die Rechnung RE-2291 doppelt belastet, bitte um Erstattung."
echo "== report: $WORK/model/report.md"
