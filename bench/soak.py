"""Load + soak test of the live service: a steady request rate for a bounded time.

    .venv/bin/python bench/soak.py                      # own service, 5 min at 10 req/s
    .venv/bin/python bench/soak.py --url http://127.0.0.1:8000 --key-file key --duration 60
    .venv/bin/python bench/soak.py --check              # exit 1 on errors or >= 5 % growth
    .venv/bin/python bench/soak.py --smoke              # SMOKE's seconds: the whole run, briefly

Without --url it starts `ticketserve serve` on a temporary data directory, uploads generated
tickets and trains a fast-mode model through the API first. Requests are sent open-loop (a new
one every 1/rate seconds, whatever the answers' latency), one ticket each, from a pool of
generated tickets. Printed: throughput, latency percentiles, errors, and the resident memory of
the service, TorchServe's JVM and its Python worker at the start and the end of the soak.
--smoke: SMOKE's training tickets, warm-up, soak, rate and memory sampling interval.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import psutil

from training.cli import exit_with
from training.text.sample_data import generate_tickets

TICKETSERVE = str(Path(sys.executable).with_name("ticketserve"))
MAX_GROWTH = 0.05
SAMPLE_S = 30.0  # memory sampling interval during the soak
TRAINING = {"base_model": "all-MiniLM-L6-v2", "mode": "fast", "max_length": 128}
TRAIN_ROWS = 600  # generated tickets the model is trained on
# --smoke: every step of a run (start, train, warm up, soak with memory samples, report) briefly
SMOKE = {"train_rows": 200, "warmup": 2.0, "duration": 5.0, "rate": 5.0, "sample_s": 2.0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running service (default: start one)")
    parser.add_argument("--key-file", type=Path, help="file with the service's API key")
    parser.add_argument("--duration", type=float, default=300.0, help="soak seconds (300)")
    parser.add_argument("--rate", type=float, default=10.0, help="requests per second (10)")
    parser.add_argument(
        "--warmup",
        type=float,
        help="seconds before measuring (default: one pass over the ticket pool, so every "
        "text length has been through the worker before memory is compared)",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 on errors or growth")
    parser.add_argument("--smoke", action="store_true", help="a few seconds of everything")
    args = parser.parse_args(argv)
    args.train_rows, args.sample_s = TRAIN_ROWS, SAMPLE_S
    if args.smoke:
        vars(args).update(SMOKE)
    for name in ("duration", "rate", "warmup"):
        value = getattr(args, name)
        if value is not None and not 0 <= value <= 24 * 3600:
            parser.error(f"--{name} must be between 0 and 86400")
    if args.rate <= 0:
        parser.error("--rate must be positive")
    return args


# -- the service ----------------------------------------------------------------------------


def start_service(
    data_dir: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """`ticketserve serve` on `data_dir` with no API key and `env` added; (process, URL)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = open(data_dir.parent / "serve.log", "wb")  # noqa: SIM115 - lives with the process
    environ = {k: v for k, v in os.environ.items() if k != "TICKETSERVE_API_KEY"}
    process = subprocess.Popen(
        [TICKETSERVE, "serve", "--port", str(port), "--data-dir", str(data_dir)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**environ, **(env or {})},
    )
    url = f"http://127.0.0.1:{port}"
    wait(lambda: httpx.get(f"{url}/healthz", timeout=2).status_code == 200, 300, process)
    return process, url


def prepare_model(url: str, headers: dict[str, str], rows: int) -> None:
    with httpx.Client(base_url=url, headers=headers, timeout=300) as client:
        body = generate_tickets(rows, seed=3).to_csv(index=False).encode()
        client.post("/api/v1/train-data", content=body, headers={"Content-Type": "text/csv"})
        job = client.post("/api/v1/train", json=TRAINING).json()

        def finished() -> bool:
            status = client.get(f"/api/v1/train/{job['job_id']}").json()["status"]
            if status in ("failed", "cancelled"):
                raise SystemExit(f"training failed: {status}")
            return status == "succeeded"

        wait(finished, 1800)
    wait(lambda: httpx.get(f"{url}/readyz", timeout=30).status_code == 200, 300)


def wait(check, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"the service exited with {process.returncode}")
        try:
            if check():
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"not ready after {timeout:.0f}s")


def memory(service_pid: int) -> dict[str, float]:
    """Resident MB of the service, TorchServe's JVM and its worker(s)."""
    service = psutil.Process(service_pid)
    found = {"service": service.memory_info().rss, "JVM": 0, "worker": 0}
    for child in service.children(recursive=True):
        try:
            cmdline = " ".join(child.cmdline())
            if "org.pytorch.serve.ModelServer" in cmdline:
                found["JVM"] += child.memory_info().rss
            elif "model_service_worker" in cmdline:
                found["worker"] += child.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return {name: rss / 2**20 for name, rss in found.items()}


# -- the load -------------------------------------------------------------------------------


async def soak(
    url: str,
    headers: dict[str, str],
    texts: list[str],
    seconds: float,
    rate: float,
    pid: int | None = None,
    samples: list[float] | None = None,
    every: float = SAMPLE_S,
) -> tuple[list[float], Counter[str], float]:
    """Open loop: one request every 1/rate s for `seconds`; (latencies, outcomes, wall s).

    With `pid`, the total resident MB is appended to `samples` every `every` seconds.
    """
    latencies: list[float] = []
    outcomes: Counter[str] = Counter()
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60, limits=limits) as http:

        async def one(text: str) -> None:
            started = time.perf_counter()
            try:
                answer = await http.post("/api/v1/classify", json={"ticket_data": text})
                outcomes[str(answer.status_code)] += 1
            except httpx.HTTPError as exc:
                outcomes[type(exc).__name__] += 1
                return
            latencies.append(time.perf_counter() - started)

        async def sample() -> None:
            while True:
                await asyncio.sleep(every)
                samples.append(sum(memory(pid).values()))

        sampler = asyncio.create_task(sample()) if pid is not None and samples is not None else None
        tasks = []
        started = time.perf_counter()
        count = int(seconds * rate)
        for index in range(count):
            delay = started + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(texts[index % len(texts)])))
        await asyncio.gather(*tasks)
        if sampler is not None:
            sampler.cancel()
        return latencies, outcomes, time.perf_counter() - started


def report(
    latencies: list[float], outcomes: Counter[str], wall: float, start: dict, end: dict
) -> tuple[int, float]:
    total = sum(outcomes.values())
    errors = total - outcomes.get("200", 0)
    p50, p95, p99 = (np.percentile(latencies, q) * 1000 for q in (50, 95, 99))
    print(f"\nrequests {total} in {wall:.0f}s: {total / wall:.1f} req/s, errors {errors} "
          f"({dict(outcomes)})")  # fmt: skip
    print(f"latency ms: p50 {p50:.0f}  p95 {p95:.0f}  p99 {p99:.0f}")
    print("\n| process | RSS at start (MB) | RSS at end (MB) | growth |\n|---|---|---|---|")
    for name in start:
        growth = (end[name] - start[name]) / start[name] if start[name] else 0.0
        print(f"| {name} | {start[name]:.0f} | {end[name]:.0f} | {growth:+.1%} |")
    before, after = sum(start.values()), sum(end.values())
    growth = (after - before) / before
    print(f"| all | {before:.0f} | {after:.0f} | {growth:+.1%} |")
    return errors, growth


def main() -> int:
    args = parse_args()
    key = args.key_file.read_text().strip() if args.key_file else None
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    work = tempfile.TemporaryDirectory(prefix="soak-")
    process = None
    try:
        if args.url:
            url = args.url.rstrip("/")
            pid = _listening_pid(url)
        else:
            process, url = start_service(Path(work.name) / "var")
            print("training a model through the API ...", flush=True)
            prepare_model(url, headers, args.train_rows)
            pid = process.pid
        sample = generate_tickets(500, seed=9)
        texts = list(sample["subject"] + "\n" + sample["body"])
        warmup = len(texts) / args.rate if args.warmup is None else args.warmup
        print(f"warm-up {warmup:.0f}s, then {args.duration:.0f}s at {args.rate:g} req/s",
              flush=True)  # fmt: skip
        asyncio.run(soak(url, headers, texts, warmup, args.rate))
        start = memory(pid)
        samples = [sum(start.values())]
        latencies, outcomes, wall = asyncio.run(
            soak(url, headers, texts, args.duration, args.rate, pid, samples, args.sample_s)
        )
        end = memory(pid)
        errors, growth = report(latencies, outcomes, wall, start, end)
        print(
            f"total RSS every {args.sample_s:.0f}s (MB): " + " ".join(f"{m:.0f}" for m in samples)
        )
    finally:
        if process is not None:
            process.send_signal(signal.SIGTERM)
            process.wait(120)
        work.cleanup()
    if args.check and (errors or growth >= MAX_GROWTH):
        print(f"check failed: {errors} errors, memory growth {growth:.1%} (limit {MAX_GROWTH:.0%})")
        return 1
    return 0


def _listening_pid(url: str) -> int:
    port = httpx.URL(url).port
    for connection in psutil.net_connections("tcp"):
        listening = connection.status == psutil.CONN_LISTEN and connection.laddr.port == port
        if listening and connection.pid is not None:
            return connection.pid
    raise SystemExit(f"no local process listens on port {port} (memory needs the service's pid)")


if __name__ == "__main__":
    exit_with(main())
