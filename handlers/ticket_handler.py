"""TorchServe handler for the ticket classifier (one head per label column).

Packed into every .mar with `ticket_model.py` (a verbatim copy of training/inference/model.py),
`ticket_similar.py` (training/inference/similar_index.py), `ticket_requests.py`, and the model
directory's `ticket_cleaning.py` + `cleaning.json` (the cleaning it was trained with: every ticket
is cleaned by it before the model reads it); it imports nothing else from the project, so an old
archive keeps working.

One call of `handle` serves one dynamic batch (up to the archive's batchSize requests): every
request is parsed, the tickets of all good requests are tokenized together (padded to the longest,
sorted by length), run through the model in one forward pass under `torch.inference_mode()` and
brought to the host once; a request that asks for similar tickets has the same pass's embeddings
looked up in the model's stored tickets; each request then gets its own answer, a bad one its own
400. Should the batched pass fail, each request is run again alone, so a ticket that breaks the
model fails only its own request (500), never its batch neighbours.

Settings come from the `handler:` section of the archive's model-config.yaml:
    top_k               labels listed per head (training/export/archive.py writes the model's own)
    forward_batch_size  most tickets per forward pass; larger batches are split (default 128)
    num_threads         CPU threads for torch; 0 keeps the worker's default (default 0)
"""

from __future__ import annotations

import functools
import json
import logging
import time
from pathlib import Path
from typing import Any

import ticket_model
import ticket_requests
import ticket_similar
import torch
from transformers import AutoTokenizer
from ts.torch_handler.base_handler import BaseHandler

logger = logging.getLogger(__name__)

WARM_UP_TEXT = "warm-up"
CLEANING_FILE = "cleaning.json"  # training/inference/model_cleaning.py's


class TicketHandler(BaseHandler):
    """Parse requests, classify all their tickets in one forward pass, answer each request."""

    def initialize(self, context: Any) -> None:
        """Load the model, tokenizer and settings from the unpacked archive."""
        properties = context.system_properties
        model_dir = properties["model_dir"]
        settings = dict((context.model_yaml_config or {}).get("handler") or {})
        self.top_k = int(settings["top_k"])
        self.forward_batch_size = int(settings.get("forward_batch_size", 128))
        gpu_id = properties.get("gpu_id")
        if gpu_id is not None and torch.cuda.is_available():
            self.device = torch.device(f"cuda:{gpu_id}")
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device("cpu")
            if int(settings.get("num_threads", 0)) > 0:
                torch.set_num_threads(int(settings["num_threads"]))
        on_gpu = self.device.type == "cuda"
        # On a GPU: SDPA kernels and half precision; on a CPU the precision training embedded
        # in (fp32, or bf16 where this CPU computes it natively; emulated it is slower than fp32).
        model = ticket_model.TicketClassifier.load(
            model_dir, attn_implementation="sdpa" if on_gpu else None
        )
        if on_gpu:
            model = model.half()
        elif model.encoder_precision == "bf16" and not ticket_model.native_bf16():
            logger.warning("trained with bf16 embeddings; this CPU lacks native bf16: fp32")
            model.encoder_precision = "fp32"
        self.model = model.to(self.device).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.clean = _cleaner(model_dir)
        self.similar = ticket_similar.SimilarIndex.load(model_dir)
        self.manifest = context.manifest
        self.model_version = str(context.manifest["model"].get("modelVersion", ""))
        # Pay lazy initialisation (kernels, allocator) now, not in the first client's request.
        ticket_model.predict_proba(self.model, self.tokenizer, [WARM_UP_TEXT])
        self.initialized = True
        logger.info(
            "ticket model %s version %s loaded on %s%s (heads %s, torch threads %d, batch size "
            "%s, %s stored tickets for similar-ticket lookups)",
            context.model_name,
            self.model_version,
            self.device,
            ", encoder in bf16" if not on_gpu and self.model.encoder_precision == "bf16" else "",
            ", ".join(self.model.labels),
            torch.get_num_threads(),
            properties.get("batch_size"),
            len(self.similar) if self.similar is not None else "no",
        )

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[bytes]:
        """Answer one batch of requests; the list holds one JSON body per request."""
        started = time.perf_counter()
        plan = self.preprocess(data, context)
        try:
            answers = self.postprocess(plan, self.inference(plan), context)
        except Exception:
            if len(data) == 1:
                raise
            logger.exception("batch of %d requests failed: answering each alone", len(data))
            answers = [self._alone(idx, row, context) for idx, row in enumerate(data)]
        elapsed_ms = (time.perf_counter() - started) * 1000
        # The batch size is logged (model_log.log) and counted, so batching can be observed.
        logger.info(
            "batch size %d: %d tickets, %d bad requests, %.1f ms",
            len(data),
            len(plan.texts),
            plan.bad,
            elapsed_ms,
        )
        metrics = context.metrics
        if metrics is not None:
            metrics.add_counter("TicketBatches", 1, None, [])
            metrics.add_counter("TicketBatchRequests", len(data), None, [])
            metrics.add_counter("TicketsClassified", len(plan.texts), None, [])
        return answers

    def preprocess(self, data: list[dict[str, Any]], context: Any) -> ticket_requests.BatchPlan:
        """Parse every request of the batch; bad ones are kept as their error."""
        rows = [(row, _content_type(context, idx, row)) for idx, row in enumerate(data)]
        return ticket_requests.plan_batch(rows, self.clean)

    def inference(self, plan: ticket_requests.BatchPlan) -> ticket_requests.Inference:
        """Class probabilities per head for all tickets (with their fields, for a model that
        reads them), in forward passes of forward_batch_size; and for each ticket whose request
        asked for similar tickets, that many most similar stored ones (None: the model keeps
        none)."""
        texts, similar = plan.texts, plan.similar
        if not texts:
            return ticket_requests.Inference({}, [])
        if self.similar is None or not any(similar):
            probs = ticket_model.predict_proba(
                self.model, self.tokenizer, texts, self.forward_batch_size, plan.fields
            )
            return ticket_requests.Inference(probs, [None] * len(texts))
        logits, pooled = ticket_model.forward_texts(
            self.model, self.tokenizer, texts, self.forward_batch_size, plan.fields
        )
        asking = [i for i, k in enumerate(similar) if k]
        found = self.similar.search(pooled[asking], max(similar))
        neighbours: list[list[dict[str, Any]] | None] = [None] * len(texts)
        for i, hits in zip(asking, found, strict=True):
            neighbours[i] = hits[: similar[i]]
        probs = ticket_model.probabilities(logits, self.model.temperature)
        return ticket_requests.Inference(probs, neighbours)

    def postprocess(
        self, plan: ticket_requests.BatchPlan, inference: ticket_requests.Inference, context: Any
    ) -> list[bytes]:
        """One JSON body per request, with its HTTP status and content type set on the context."""
        predictions = self._predictions(inference, plan)
        answers = ticket_requests.batch_answers(plan, predictions, self.model_version)
        return [_respond(context, idx, status, body) for idx, (status, body) in enumerate(answers)]

    def _predictions(
        self, inference: ticket_requests.Inference, plan: ticket_requests.BatchPlan
    ) -> list[dict[str, Any]]:
        """Each ticket's heads, the share of its words the tokenizer barely knows (for the
        service's drift watch), and the similar tickets where its request asked for them."""
        if not inference.probs:
            return []
        predictions: list[dict[str, Any]] = ticket_model.format_predictions(
            inference.probs, self.model.labels, self.top_k, self.model.gate
        )
        shares = ticket_model.rare_token_shares(self.tokenizer, plan.texts, self.model.max_length)
        for i, (prediction, share) in enumerate(zip(predictions, shares, strict=True)):
            prediction["rare_token_share"] = share
            if plan.similar[i]:
                prediction[ticket_requests.SIMILAR_KEY] = inference.similar[i]
        return predictions

    def _alone(self, idx: int, row: dict[str, Any], context: Any) -> bytes:
        """Answer request `idx` of a failed batch by itself; its own failure becomes a 500."""
        plan = ticket_requests.plan_batch([(row, _content_type(context, idx, row))], self.clean)
        try:
            predictions = self._predictions(self.inference(plan), plan)
            status, body = ticket_requests.batch_answers(plan, predictions, self.model_version)[0]
        except Exception as exc:
            logger.exception("request %d of the batch failed on its own", idx)
            status, body = (
                500,
                ticket_requests.error_answer(
                    f"this request could not be classified: {type(exc).__name__}", status=500
                ),
            )
        return _respond(context, idx, status, body)


def _cleaner(model_dir: str) -> ticket_requests.Cleaner | None:
    """The model's cleaning: the archive's copy of training/text/cleaning.py with the settings the
    model was trained with; None for an archive from before cleaning (texts read as sent)."""
    settings_file = Path(model_dir) / CLEANING_FILE
    if not settings_file.is_file():
        return None
    import ticket_cleaning  # packed beside this file (training/inference/model_cleaning.py)

    settings = ticket_cleaning.CleaningSettings.from_dict(
        json.loads(settings_file.read_text(encoding="utf-8"))
    )
    return functools.partial(ticket_cleaning.clean_ticket, settings=settings)


def _respond(context: Any, idx: int, status: int, body: dict[str, Any]) -> bytes:
    """Set request `idx`'s content type (and status, unless 200); its JSON body as bytes."""
    context.set_response_content_type(idx, "application/json")
    if status != 200:
        reason = "Bad Request" if status == 400 else "Internal Server Error"
        context.set_response_status(status, reason, idx)
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def _content_type(context: Any, idx: int, row: dict[str, Any]) -> str | None:
    """The content type of this request's body, else of the request (form data arrives parsed)."""
    for key in ticket_requests.BODY_KEYS:
        if key in row:
            header = context.get_request_header(idx, key)
            if isinstance(header, dict) and header.get("content-type"):
                return header["content-type"]
    return context.get_request_header(idx, "Content-Type")
