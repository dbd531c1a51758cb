"""The frozen encoder in bf16 on a CPU (`encoder_precision`): embeddings within a cosine of
0.999 of fp32's, the same labels, the choice recorded in the model and the embedding cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_CONFIG, TrainedModel
from handler_context import FakeContext, archive_handler, unpack
from transformers import AutoTokenizer

from training.config import TrainConfig
from training.encoders.base_models import bundled_minilm_path
from training.encoders.embeddings import encoder_fingerprint
from training.export.archive import build_archive
from training.export.predict import Predictor
from training.inference.model import MODEL_FILE, TicketClassifier, forward_texts, native_bf16
from training.text.data import load_tickets
from training.train import encoder_precision, train

BF16 = TrainConfig.from_dict(TINY_CONFIG.to_dict() | {"encoder_precision": "bf16"})
COMPARED = 48  # tickets compared in both precisions: bf16 is slow where a CPU emulates it


@pytest.mark.slow  # a second model, embedded in bf16
def test_a_bf16_model_embeds_and_labels_as_fp32_does(
    tiny_model: TrainedModel, tmp_path: Path
) -> None:
    tickets = load_tickets(tiny_model.data_path)
    result = train(tickets, BF16, tmp_path / "model", embedding_cache=tmp_path / "cache.sqlite")
    settings = json.loads((result.model_dir / MODEL_FILE).read_text(encoding="utf-8"))
    assert settings["encoder_precision"] == "bf16"
    assert json.loads((tiny_model.model_dir / MODEL_FILE).read_text())["encoder_precision"] == (
        "fp32"
    )

    texts = tickets.frame["text"].tolist()[:COMPARED]
    tokenizer = AutoTokenizer.from_pretrained(result.model_dir)
    bf16 = TicketClassifier.load(result.model_dir)
    fp32 = TicketClassifier.load(result.model_dir)
    fp32.encoder_precision = "fp32"
    _, in_bf16 = forward_texts(bf16, tokenizer, texts)
    _, in_fp32 = forward_texts(fp32, tokenizer, texts)
    assert in_bf16.dtype == np.float32  # pooled in float32 after the encoder
    cosine = np.sum(in_bf16 * in_fp32, axis=1)  # both L2-normalised
    assert cosine.min() > 0.999, cosine.min()
    assert not np.array_equal(in_bf16, in_fp32)  # the bf16 path really ran

    # The heads fitted on bf16 embeddings label the tickets as those fitted on fp32's.
    ours = Predictor.load(result.model_dir).predict(texts)
    theirs = Predictor.load(tiny_model.model_dir).predict(texts)
    for head in ("queue", "priority"):
        pairs = zip(ours, theirs, strict=True)
        same = np.mean([a[head]["label"] == b[head]["label"] for a, b in pairs])
        assert same >= 0.95, (head, same)

    # The archive carries the choice: its handler embeds in bf16 too (this CPU has it natively)
    # and answers as the in-process model does, up to bf16's dependence on the batch.
    unpacked = unpack(build_archive(result.model_dir, tmp_path / "store"), tmp_path / "mar")
    handler = archive_handler(unpacked)
    assert handler.model.encoder_precision == ("bf16" if native_bf16() else "fp32")
    probes = texts[:8]
    rows = [{"body": {"ticket_data": text}} for text in probes]
    served = [json.loads(raw) for raw in handler.handle(rows, FakeContext(unpacked).batch(
        [{"Content-Type": "application/json"}] * len(rows)))]  # fmt: skip
    for answer, want in zip(served, Predictor.load(result.model_dir).predict(probes), strict=True):
        for head in ("queue", "priority"):
            assert answer[head]["label"] == want[head]["label"]
            assert answer[head]["confidence"] == pytest.approx(want[head]["confidence"], abs=2e-2)


def test_the_cache_keeps_each_precision_apart() -> None:
    base = str(bundled_minilm_path())
    fp32 = encoder_fingerprint(base, 32, True)
    assert encoder_fingerprint(base, 32, True, "fp32") == fp32  # the keys written before
    assert encoder_fingerprint(base, 32, True, "bf16") != fp32


def test_only_fast_mode_on_a_cpu_embeds_in_bf16() -> None:
    cpu, gpu = torch.device("cpu"), torch.device("cuda:0")
    assert encoder_precision(BF16, fast=True, device=cpu) == "bf16"
    assert encoder_precision(BF16, fast=False, device=cpu) == "fp32"  # full mode fine-tunes
    assert encoder_precision(BF16, fast=True, device=gpu) == "fp32"
    assert encoder_precision(TINY_CONFIG, fast=True, device=cpu) == "fp32"  # the default


@pytest.mark.parametrize(
    ("cpuinfo", "native"),
    [
        ("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n", True),
        ("flags\t\t: fpu sse2 avx2 amx_bf16 amx_tile\n", True),
        ("flags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n", False),
        ("processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n", True),
        ("processor\t: 0\nFeatures\t: fp asimd\n", False),
        ("", False),
    ],
)
def test_native_bf16_is_read_from_the_cpu_flags(cpuinfo: str, native: bool, tmp_path) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo)
    assert native_bf16(path) is native
    assert native_bf16(tmp_path / "missing") is False
