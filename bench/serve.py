"""Serving benchmark: TorchServe end to end vs the in-process forward pass vs the tutorial's way.

    .venv/bin/python bench/serve.py [--model DIR] [--rows N] [--rounds R] [--json OUT]

On the same texts and the same model, in one run:
  (a) TorchServe over HTTP, one ticket per request, at concurrency 1, 8 and 32
  (b) TorchServe over HTTP, 32 tickets per request ({"tickets": [...]}), concurrency 1 and 2
  (c) the raw in-process forward pass, 32 tickets per batch, tokenized beforehand (the limit)
  (d) the tutorial's approach: transformers.pipeline("text-classification"), one call per ticket
then the throughput ratios a/c, b/c and a/d. Without --model a small model is trained first.

The modes take turns, round after round (TorchServe idles while (c) and (d) run in this process),
and each mode's throughput is the median over the rounds: on a machine shared with other work, a
burst of load then hits every mode alike instead of whichever ran at that moment. Latency
percentiles pool every call of every round. On a GPU (bench/gpu_check.sh) (c) and the handler run
in half precision with SDPA attention.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import torch

from shim.torchserve import TorchServe
from training.archive import ServingSettings, build_archive
from training.model import TicketClassifier, encode

MODEL = "ticket"
LIST_SIZE = 32
Run = tuple[list[float], float]  # latencies of the calls (s), wall time (s)


@dataclass
class Mode:
    """One measured way of classifying the texts, with the runs of every round."""

    name: str
    concurrency: int
    tickets_per_call: int
    tickets: int  # classified per round: every mode classifies all the texts
    run: Callable[[], Run]
    runs: list[Run] = field(default_factory=list)

    def result(self) -> dict[str, Any]:
        latencies = sorted(latency for run, _ in self.runs for latency in run)
        rates = [self.tickets / wall for _, wall in self.runs]
        p95 = latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))]
        return {
            "mode": self.name,
            "concurrency": self.concurrency,
            "tickets_per_call": self.tickets_per_call,
            "calls": len(latencies),
            "tickets_per_s": round(statistics.median(rates), 1),
            "p50_ms": round(statistics.median(latencies) * 1000, 2),
            "p95_ms": round(p95 * 1000, 2),
        }


def timed_loop(calls: list[Callable[[], Any]], sync: Callable[[], None]) -> Run:
    latencies = []
    started = time.perf_counter()
    for call in calls:
        t0 = time.perf_counter()
        call()
        sync()
        latencies.append(time.perf_counter() - t0)
    return latencies, time.perf_counter() - started


def no_sync() -> None:
    return None


# -- in process -----------------------------------------------------------------------------


def load_model(model_dir: Path, device: torch.device) -> TicketClassifier:
    """The model as the handler serves it: fp32 on a CPU; fp16 + SDPA on a GPU."""
    on_gpu = device.type == "cuda"
    model = TicketClassifier.load(model_dir, attn_implementation="sdpa" if on_gpu else None)
    return (model.half() if on_gpu else model).to(device).eval()


def forward_mode(model_dir: Path, texts: list[str], device: torch.device) -> Mode:
    """(c) forward passes over pre-tokenized 32-ticket batches (the requests of (b))."""
    from transformers import AutoTokenizer

    model = load_model(model_dir, device)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    chunks = [texts[i : i + LIST_SIZE] for i in range(0, len(texts), LIST_SIZE)]
    batches = [encode(tokenizer, chunk, model.max_length, device) for chunk in chunks]
    sync = torch.cuda.synchronize if device.type == "cuda" else no_sync

    @torch.inference_mode()
    def forward(batch: dict[str, torch.Tensor]) -> None:
        logits = model(**batch)
        torch.cat([logits[h].float().softmax(-1) for h in model.labels], dim=-1).cpu()

    for batch in batches[:2]:
        forward(batch)  # warm-up
    return Mode(
        "(c) in-process forward pass",
        1,
        LIST_SIZE,
        len(texts),
        lambda: timed_loop([lambda b=b: forward(b) for b in batches], sync),
    )


def pipeline_mode(model_dir: Path, texts: list[str], device: torch.device) -> Mode:
    """(d) the tutorial's pipeline("text-classification"), called once per ticket.

    A sequence-classification model with the same encoder weights and the queue head: the same
    encoder work per ticket as ours (plus BERT's pooler layer).
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    ours = TicketClassifier.load(model_dir)
    queue = ours.labels.get("queue") or next(iter(ours.labels.values()))
    classifier = AutoModelForSequenceClassification.from_pretrained(
        model_dir, num_labels=len(queue), id2label=dict(enumerate(queue))
    )
    base = getattr(classifier, classifier.base_model_prefix)
    base.load_state_dict(ours.encoder.state_dict(), strict=False)
    pipe = pipeline(
        "text-classification",
        model=classifier,
        tokenizer=AutoTokenizer.from_pretrained(model_dir),
        device=device,
        truncation=True,
        max_length=ours.max_length,
    )
    sync = torch.cuda.synchronize if device.type == "cuda" else no_sync
    for text in texts[:3]:
        pipe(text)
    return Mode(
        '(d) pipeline("text-classification")',
        1,
        1,
        len(texts),
        lambda: timed_loop([lambda t=t: pipe(t) for t in texts], sync),
    )


# -- TorchServe -----------------------------------------------------------------------------


async def http_load(
    url: str, bodies: list[dict[str, Any]], concurrency: int, headers: dict[str, str]
) -> Run:
    """Closed loop: `concurrency` clients, each sending its next body when answered."""
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=300, limits=limits, headers=headers) as client:

        async def worker() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                t0 = time.perf_counter()
                response = await client.post(url, json=body)
                latencies.append(time.perf_counter() - t0)
                if response.status_code != 200:
                    raise RuntimeError(f"TorchServe {response.status_code}: {response.text}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return latencies, time.perf_counter() - started


def torchserve_modes(url: str, texts: list[str], headers: dict[str, str]) -> list[Mode]:
    singles = [{"ticket_data": t} for t in texts]
    lists = [{"tickets": texts[i : i + LIST_SIZE]} for i in range(0, len(texts), LIST_SIZE)]
    asyncio.run(http_load(url, singles[:16], 8, headers))  # warm-up
    modes = [
        Mode(
            "(a) TorchServe, 1 ticket/request",
            n,
            1,
            len(texts),
            lambda n=n: asyncio.run(http_load(url, singles, n, headers)),
        )
        for n in (1, 8, 32)
    ]
    modes += [
        Mode(
            f"(b) TorchServe, {LIST_SIZE} tickets/request",
            n,
            LIST_SIZE,
            len(texts),
            lambda n=n: asyncio.run(http_load(url, lists, n, headers)),
        )
        for n in (1, 2)
    ]
    return modes


def report_worker_device(server: TorchServe) -> None:
    with server.client() as client:
        worker = client.describe(MODEL)[0]["workers"][0]
    loaded = re.search(r"loaded on (\S+)", server.model_log.read_text(errors="replace"))
    print(
        f"TorchServe gave the worker a GPU: {'yes' if worker['gpu'] else 'no'}; "
        f"the handler runs on {loaded.group(1) if loaded else '?'}",
        flush=True,
    )


# -- data and model -------------------------------------------------------------------------


def bench_texts(rows: int, texts_file: Path | None = None) -> list[str]:
    """Generated tickets joined as training joins subject and body (seed apart from training),
    or the first `rows` texts of a JSON list (bench/gpu_check.sh brings one: no pandas there)."""
    if texts_file is not None:
        return json.loads(texts_file.read_text(encoding="utf-8"))[:rows]
    from training.sample_data import generate_tickets

    frame = generate_tickets(rows, seed=12345)
    return [
        "\n".join(p for p in (str(s or "").strip(), str(b or "").strip()) if p)
        for s, b in zip(frame["subject"].fillna(""), frame["body"].fillna(""), strict=True)
    ]


def quick_model(work: Path) -> Path:
    from training.config import TrainConfig
    from training.data import load_tickets
    from training.sample_data import write_sample_csv
    from training.train import train

    print("no --model given: training a small one (1 epoch, 300 tickets) ...", flush=True)
    data_path = work / "train.csv"
    write_sample_csv(data_path, rows=300, seed=1)
    # MiniLM, as in the numbers of docs/serving.md; --model serves any other model directory.
    config = TrainConfig(
        base_model="all-MiniLM-L6-v2", epochs=1, batch_size=16, learning_rate=2e-4, seed=1
    )
    return train(load_tickets(data_path), config, work / "model").model_dir


# -- report ---------------------------------------------------------------------------------


def print_report(results: list[dict[str, Any]], device: torch.device) -> dict[str, float]:
    header = f"{'mode':<38} {'conc':>4} {'tick/call':>9} {'calls':>5} {'tickets/s':>10}"
    print("\n" + header + f" {'p50 ms':>9} {'p95 ms':>9}")
    for r in results:
        print(
            f"{r['mode']:<38} {r['concurrency']:>4} {r['tickets_per_call']:>9} {r['calls']:>5} "
            f"{r['tickets_per_s']:>10.1f} {r['p50_ms']:>9.2f} {r['p95_ms']:>9.2f}"
        )

    def rate(prefix: str, concurrency: int | None = None) -> float:
        return max(
            r["tickets_per_s"]
            for r in results
            if r["mode"].startswith(prefix) and concurrency in (None, r["concurrency"])
        )

    c, d = rate("(c)"), rate("(d)")
    ratios = {f"a(conc {n})/c": rate("(a)", n) / c for n in (1, 8, 32)}
    ratios["b/c"] = rate("(b)") / c
    ratios.update({f"a(conc {n})/d": rate("(a)", n) / d for n in (1, 8, 32)})
    print("\nratios of throughput (b: its best concurrency):")
    for name, value in ratios.items():
        print(f"  {name:<14} {value:6.2f}")
    single_p50 = next(
        r["p50_ms"] for r in results if r["mode"].startswith("(a)") and r["concurrency"] == 1
    )
    if device.type == "cuda":
        goals = {"b >= 50% of c": ratios["b/c"] >= 0.5, "p50 single <= 15 ms": single_p50 <= 15}
    else:
        goals = {"b >= 70% of c": ratios["b/c"] >= 0.7, "a(8) >= 2x d": ratios["a(conc 8)/d"] >= 2}
    verdicts = [f"{name}: {'met' if ok else 'NOT met'}" for name, ok in goals.items()]
    print("goals: " + ", ".join(verdicts))
    return ratios


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({os.cpu_count()} cores)"


def load_average() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def run_benchmark(args: argparse.Namespace, work: Path, device: torch.device) -> dict[str, Any]:
    model_dir = args.model or quick_model(work)
    texts = bench_texts(args.rows, args.texts)
    settings = ServingSettings(max_batch_delay_ms=args.max_batch_delay)
    print(
        f"{len(texts)} tickets x {args.rounds} rounds, model {model_dir}; archive batchSize "
        f"{settings.batch_size}, maxBatchDelay {settings.max_batch_delay_ms} ms",
        flush=True,
    )
    modes = [forward_mode(model_dir, texts, device), pipeline_mode(model_dir, texts, device)]
    store = work / "model_store"
    build_archive(model_dir, store, version="1", settings=settings)
    with TorchServe(store, work / "torchserve", load_models="ticket-v1.mar") as server:
        report_worker_device(server)
        url = f"{server.inference_url}/predictions/{MODEL}"
        modes = torchserve_modes(url, texts, server.keys.headers("inference")) + modes
        load_before = load_average()
        for round_number in range(1, args.rounds + 1):
            for mode in modes:
                mode.runs.append(mode.run())
            print(f"round {round_number}/{args.rounds} done (load {load_average()})", flush=True)
    results = [mode.result() for mode in modes]
    print(f"\ndevice: {describe_device(device)}, torch threads {torch.get_num_threads()}")
    print(f"load average (1/5/15 min) before {load_before}, after {load_average()}")
    ratios = print_report(results, device)
    return {"device": describe_device(device), "results": results, "ratios": ratios}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="trained model directory (default: train one)")
    parser.add_argument("--rows", type=int, default=128, help="tickets per round (default 128)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every mode (default 3)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--workdir", type=Path, help="keep archives and TorchServe logs here")
    parser.add_argument("--texts", type=Path, help="JSON list of ticket texts to use instead")
    parser.add_argument(
        "--max-batch-delay",
        type=int,
        default=ServingSettings().max_batch_delay_ms,
        help="the archive's maxBatchDelay in ms (default: the project's)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        payload = run_benchmark(args, work, device)
    if args.json:
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
