"""Serving benchmark: TorchServe end to end vs the in-process forward pass vs the tutorial's way.

    .venv/bin/python bench/serve.py [--model DIR] [--rows N] [--rounds R] [--json OUT]
    .venv/bin/python bench/serve.py --smoke          # a tiny model, 32 tickets, one round

On the same texts and the same model, in one run:
  (a) TorchServe over HTTP, one ticket per request, at concurrency 1, 8 and 32
  (b) TorchServe over HTTP, 32 tickets per request ({"tickets": [...]}), concurrency 1 and 2
  (c) in process, what the handler does with a batch: `predict_proba` over 32 tickets
      (tokenizing, the lexical features and the forward pass, by the same code), so the limit of
      (a) and (b)
  (d) the tutorial's approach: transformers.pipeline("text-classification"), one call per ticket
then the throughput ratios a/c, b/c and a/d. Before timing, (c)'s answers are checked against
TorchServe's on the same tickets: the run fails if a label differs or a probability differs by
more than float tolerance. Without --model the default model (fast mode, multilingual-e5-small,
lexical branch) is trained first on 300 generated tickets.

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

from shim.serving.torchserve import TorchServe
from training.export.archive import ServingSettings, build_archive
from training.inference.model import TicketClassifier, predict_proba
from training.inference.model_cleaning import ModelCleaning

MODEL = "ticket"
LIST_SIZE = 32
# --smoke: tickets per round; the model trained: its tickets and settings.
SMOKE: dict[str, Any] = {
    "rows": 32,
    "train_rows": 120,
    "config": {"base_model": "all-MiniLM-L6-v2"},
}
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
    """(c) the handler's inference over 32-ticket batches (the requests of (b)), in process."""
    from transformers import AutoTokenizer

    model = load_model(model_dir, device)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    chunks = [texts[i : i + LIST_SIZE] for i in range(0, len(texts), LIST_SIZE)]
    sync = torch.cuda.synchronize if device.type == "cuda" else no_sync

    def forward(chunk: list[str]) -> None:
        predict_proba(model, tokenizer, chunk, batch_size=LIST_SIZE)

    for chunk in chunks[:2]:
        forward(chunk)  # warm-up
    return Mode(
        "(c) in-process predict_proba",
        1,
        LIST_SIZE,
        len(texts),
        lambda: timed_loop([lambda c=c: forward(c) for c in chunks], sync),
    )


def check_agreement(
    model_dir: Path, texts: list[str], device: torch.device, url: str, headers: dict[str, str]
) -> float:
    """Compare (c)'s answers with TorchServe's on the same tickets; raise if a label or a
    probability differs beyond float tolerance (fp32 on a CPU, fp16 on a GPU). Returns the
    largest probability difference."""
    from transformers import AutoTokenizer

    model = load_model(model_dir, device)
    # TorchServe cleans each ticket with the model's own cleaning before the model reads it.
    cleaned = ModelCleaning.load(model_dir).texts(texts)
    probs = predict_proba(model, AutoTokenizer.from_pretrained(model_dir), cleaned, LIST_SIZE)
    tolerance = 1e-2 if device.type == "cuda" else 1e-4
    worst = 0.0
    with httpx.Client(timeout=300, headers=headers) as client:
        for start in range(0, len(texts), LIST_SIZE):
            chunk = texts[start : start + LIST_SIZE]
            answer = client.post(url, json={"tickets": chunk})
            if answer.status_code != 200:
                raise SystemExit(f"TorchServe answered {answer.status_code}: {answer.text}")
            for i, ticket in enumerate(answer.json()["predictions"], start=start):
                for head, names in model.labels.items():
                    mine = probs[head][i]
                    label, confidence = ticket[head]["label"], ticket[head]["confidence"]
                    worst = max(worst, abs(float(mine.max()) - confidence))
                    # A near tie may flip under fp16; the confidence check still holds it.
                    tie = float(mine.max() - mine[names.index(label)]) <= tolerance
                    if (names[int(mine.argmax())] != label and not tie) or worst > tolerance:
                        raise SystemExit(
                            f"(c) and TorchServe disagree on ticket {i}, head {head}: in process "
                            f"{names[int(mine.argmax())]} {float(mine.max()):.6f}, TorchServe "
                            f"{label} {confidence:.6f} (tolerance {tolerance})"
                        )
    print(
        f"(c) agrees with TorchServe on {len(texts)} tickets: same labels, largest probability "
        f"difference {worst:.2e}",
        flush=True,
    )
    return worst


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
    loaded = re.search(r"loaded on ([^\s,]+)", server.model_log.read_text(errors="replace"))
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
    from training.text.sample_data import generate_tickets

    frame = generate_tickets(rows, seed=12345)
    return [
        "\n".join(p for p in (str(s or "").strip(), str(b or "").strip()) if p)
        for s, b in zip(frame["subject"].fillna(""), frame["body"].fillna(""), strict=True)
    ]


def quick_model(work: Path, smoke: bool) -> Path:
    """The product's default model (fast mode, default encoder, lexical branch) on generated
    tickets; with `smoke`, fewer tickets and the bundled MiniLM."""
    from training.config import TrainConfig
    from training.text.data import load_tickets
    from training.text.sample_data import write_sample_csv
    from training.train import train

    rows, overrides = (SMOKE["train_rows"], SMOKE["config"]) if smoke else (300, {})
    config = TrainConfig(mode="fast", seed=1, **overrides)
    print(f"no --model given: training {config.base_model} on {rows} tickets ...", flush=True)
    data_path = work / "train.csv"
    write_sample_csv(data_path, rows=rows, seed=1)
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
    model_dir = args.model or quick_model(work, args.smoke)
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
        headers = server.keys.headers("inference")
        worst = check_agreement(model_dir, texts, device, url, headers)
        modes = torchserve_modes(url, texts, headers) + modes
        load_before = load_average()
        for round_number in range(1, args.rounds + 1):
            for mode in modes:
                mode.runs.append(mode.run())
            print(f"round {round_number}/{args.rounds} done (load {load_average()})", flush=True)
    results = [mode.result() for mode in modes]
    print(f"\ndevice: {describe_device(device)}, torch threads {torch.get_num_threads()}")
    print(f"load average (1/5/15 min) before {load_before}, after {load_average()}")
    ratios = print_report(results, device)
    return {
        "device": describe_device(device),
        "results": results,
        "ratios": ratios,
        "largest_probability_difference": worst,
    }


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
    parser.add_argument("--smoke", action="store_true", help="a tiny model, 32 tickets, 1 round")
    args = parser.parse_args(argv)
    if args.smoke:
        args.rows, args.rounds = SMOKE["rows"], 1
    if not 1 <= args.rows <= 100_000 or not 1 <= args.rounds <= 100:
        parser.error("--rows must be in [1, 100000] and --rounds in [1, 100]")
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
