"""Zammad connector under load: signed trigger webhooks in, write-backs out, end to end.

    .venv/bin/python bench/connector_latency.py          # 20 webhooks/s for 60 s
    .venv/bin/python bench/connector_latency.py --rate 40 --duration 120
    .venv/bin/python bench/connector_latency.py --smoke  # SMOKE's seconds: the whole run, briefly

It starts the Zammad stand-in of the test suite and `ticketserve serve` on a temporary data
directory with the Zammad connector on (route mode, a priority label map), and trains a
fast-mode model through the API first (as bench/soak.py does). Then it sends signed webhooks
open-loop (a new one every 1/rate seconds, whatever the answers' latency), each a new ticket
(a generated ticket as its HTML article), and notes when the stand-in receives each ticket's
`PUT /api/v1/tickets/{id}`. Printed: the webhooks' answers and answer latency, the latency from
sending a webhook to its write-back arriving, and the writes lost (answered 202, never written
within --drain seconds) or repeated, against the targets: p95 <= 2 s and nothing lost.
A warm-up (--warmup seconds at the same rate, written back before measuring) is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import html
import json
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from soak import TRAIN_ROWS, prepare_model, start_service

from training.cli import exit_with
from training.text.sample_data import QUEUES, generate_tickets

# The test suite's Zammad stand-in (written from Zammad's REST API docs: Zammad itself cannot be
# installed here) is the help desk this bench writes to; tests/ is no package, so put it on
# the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from zammad_standin import TICKET_PATH, TOKEN, ZammadStandIn, payload

WEBHOOK = "/api/v1/connectors/zammad/webhook"
SECRET = "bench-webhook-secret-5e21"
LABEL_MAP = {"priority": {"high": "3 high", "medium": "2 normal", "low": "1 low"}}
P95_TARGET_S = 2.0
WARMUP_IDS = 900_000  # warm-up tickets' ids start here, apart from the measured ones (1, 2, ...)
# --smoke: every step of a run (start, train, warm up, send, drain, report) briefly
SMOKE = {"train_rows": 200, "warmup": 1.0, "duration": 5.0, "rate": 5.0, "drain": 30.0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=20.0, help="webhooks per second (20)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of sending (60)")
    parser.add_argument("--warmup", type=float, default=5.0, help="uncounted seconds first (5)")
    parser.add_argument(
        "--drain", type=float, default=60.0, help="seconds to wait for the last writes (60)"
    )
    parser.add_argument("--smoke", action="store_true", help="a few seconds of everything")
    args = parser.parse_args(argv)
    args.train_rows = TRAIN_ROWS
    if args.smoke:
        vars(args).update(SMOKE)
    for name in ("rate", "duration", "warmup", "drain"):
        if not 0 <= getattr(args, name) <= 24 * 3600:
            parser.error(f"--{name} must be between 0 and 86400")
    if args.rate <= 0:
        parser.error("--rate must be positive")
    return args


# -- the help desk --------------------------------------------------------------------------


@dataclass
class TimedStandIn(ZammadStandIn):
    """The stand-in, noting when each ticket's write-back arrives (perf_counter, the clock the
    sender uses: both run in this process)."""

    written: dict[str, list[float]] = field(default_factory=dict)
    refused: Counter[int] = field(default_factory=Counter)

    def answer(self, method: str, path: str, auth: str, body: bytes) -> tuple[int, Any]:
        arrived = time.perf_counter()  # before the lock: waiting for it is not the service's
        status, reply = super().answer(method, path, auth, body)
        match = TICKET_PATH.match(path)
        if method == "PUT" and match:
            with self.lock:
                if status == 200:
                    self.written.setdefault(match.group(1), []).append(arrived)
                else:
                    self.refused[status] += 1
        return status, reply


# -- the webhooks ---------------------------------------------------------------------------


@dataclass
class Delivery:
    """One webhook: its signed body, and when it was sent and answered."""

    ticket_id: str
    raw: bytes
    headers: dict[str, str]
    sent: float = float("nan")
    answered: float = float("nan")
    status: str = ""


def deliveries(count: int, first_id: int, seed: int) -> list[Delivery]:
    """`count` webhooks for new tickets `first_id`, ... as Zammad's trigger sends them, signed
    beforehand so that sending costs the loop nothing but the POST."""
    tickets = generate_tickets(count, seed=seed)
    made = []
    for offset, (subject, body) in enumerate(zip(tickets["subject"], tickets["body"], strict=True)):
        article = "".join(f"<p>{html.escape(line)}</p>" for line in body.splitlines())
        raw = json.dumps(payload(first_id + offset, subject, article)).encode()
        signature = hmac.new(SECRET.encode(), raw, hashlib.sha1).hexdigest()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "X-Zammad-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature": f"sha1={signature}",
        }
        made.append(Delivery(str(first_id + offset), raw, headers))
    return made


async def send(url: str, batch: list[Delivery], rate: float) -> float:
    """Open loop: one webhook every 1/rate s; the seconds it took to send and answer all."""
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:

        async def one(delivery: Delivery) -> None:
            delivery.sent = time.perf_counter()
            try:
                answer = await http.post(WEBHOOK, content=delivery.raw, headers=delivery.headers)
                delivery.status = str(answer.status_code)
            except httpx.HTTPError as exc:
                delivery.status = type(exc).__name__
            delivery.answered = time.perf_counter()

        tasks = []
        started = time.perf_counter()
        for index, delivery in enumerate(batch):
            delay = started + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(delivery)))
        await asyncio.gather(*tasks)
        return time.perf_counter() - started


def drain(standin: TimedStandIn, batch: list[Delivery], timeout: float) -> float:
    """Wait until every accepted webhook's ticket was written, at most `timeout` s; the seconds
    waited."""
    started = time.perf_counter()
    expected = {d.ticket_id for d in batch if d.status == "202"}
    while time.perf_counter() - started < timeout:
        with standin.lock:
            if expected <= standin.written.keys():
                break
        time.sleep(0.1)
    return time.perf_counter() - started


# -- the report -----------------------------------------------------------------------------


def report(standin: TimedStandIn, batch: list[Delivery], wall: float, drain_s: float) -> None:
    """Print the markdown table of a measured batch (writes awaited `drain_s` after it)."""
    answers = Counter(d.status for d in batch)
    accepted = [d for d in batch if d.status == "202"]
    written = {d.ticket_id: standin.written.get(d.ticket_id, []) for d in accepted}
    arrived = [d for d in accepted if written[d.ticket_id]]
    end_to_end = [written[d.ticket_id][0] - d.sent for d in arrived]
    outbox = [written[d.ticket_id][0] - d.answered for d in arrived]
    lost = len(accepted) - len(arrived)
    duplicates = sum(len(times) > 1 for times in written.values())
    updates = [u for tid, u in standin.updates if tid in written]
    p95 = float(np.percentile(end_to_end, 95)) if end_to_end else float("inf")
    others = ", ".join(f"{status}: {n}" for status, n in answers.items() if status != "202")
    rows = [
        ("webhooks sent", f"{len(batch)} in {wall:.1f} s ({len(batch) / wall:.1f}/s)", "", ""),
        ("webhook answers", f"202: {len(accepted)}, other: {others or 0}", "", ""),
        ("webhook answer ms p50 / p95 / p99", _ms([d.answered - d.sent for d in batch]), "", ""),
        ("webhook → write-back ms p50 / p95 / p99 / max", _ms(end_to_end, with_max=True),
         f"p95 ≤ {P95_TARGET_S * 1000:.0f}", _met(p95 <= P95_TARGET_S)),
        ("answer → write-back ms p50 / p95 / p99 / max (the outbox)",
         _ms(outbox, with_max=True), "", ""),
        (f"writes lost (202, not written {drain_s:.0f} s after)", str(lost), "0", _met(lost == 0)),
        ("duplicates (a ticket written more than once)", str(duplicates), "", ""),
        ("writes refused by the stand-in", str(sum(standin.refused.values())), "", ""),
        ("writes setting group / priority",
         f"{sum('group' in u for u in updates)} / {sum('priority' in u for u in updates)}"
         f" of {len(updates)}", "", ""),
    ]  # fmt: skip
    print("\n| measure | measured | target | met |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def _ms(seconds: list[float], with_max: bool = False) -> str:
    if not seconds:
        return "—"
    values = [np.percentile(seconds, q) for q in (50, 95, 99)]
    if with_max:
        values.append(max(seconds))
    return " / ".join(f"{value * 1000:.0f}" for value in values)


def _met(ok: bool) -> str:
    return "✓" if ok else "✗"


# -- the run --------------------------------------------------------------------------------


def main() -> int:
    args = parse_args()
    standin = TimedStandIn(groups=list(QUEUES)).start()
    work = tempfile.TemporaryDirectory(prefix="connectors-")
    labels = Path(work.name) / "labels.json"
    labels.write_text(json.dumps(LABEL_MAP))
    env = {
        "TICKETSERVE_ZAMMAD_URL": standin.url,
        "TICKETSERVE_ZAMMAD_TOKEN": TOKEN,
        "TICKETSERVE_ZAMMAD_WEBHOOK_SECRET": SECRET,
        "TICKETSERVE_ZAMMAD_MODE": "route",
        "TICKETSERVE_CONNECTOR_LABEL_MAP": str(labels),
    }
    process = None
    try:
        process, url = start_service(Path(work.name) / "var", env)
        print("training a model through the API ...", flush=True)
        prepare_model(url, {}, args.train_rows)
        warmup = deliveries(int(args.warmup * args.rate), WARMUP_IDS, seed=5)
        measured = deliveries(int(args.duration * args.rate), 1, seed=11)
        print(f"warm-up {args.warmup:g}s, then {args.duration:g}s at {args.rate:g} webhooks/s",
              flush=True)  # fmt: skip
        # The warm-up's writes are out before measuring: its backlog is not the measured one's.
        asyncio.run(send(url, warmup, args.rate))
        drain(standin, warmup, args.drain)
        wall = asyncio.run(send(url, measured, args.rate))
        drained = drain(standin, measured, args.drain)
        print(f"sent in {wall:.1f}s; the last write {drained:.1f}s later", flush=True)
        time.sleep(2.0)  # a repeated write would follow within the outbox's next pass or two
        report(standin, measured, wall, args.drain)
    finally:
        if process is not None:
            process.send_signal(signal.SIGTERM)
            process.wait(120)
        standin.stop()
        work.cleanup()
    return 0


if __name__ == "__main__":
    exit_with(main())
