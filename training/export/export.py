"""Write a trained model directory atomically: a crash never leaves half a model visible."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from transformers import PreTrainedTokenizerBase

from training.config import TrainConfig
from training.encoders.base_models import make_readable
from training.errors import UserError
from training.fit import label_issues
from training.fit.evaluate import write_report
from training.inference import similar_index
from training.inference.model import LABELS_FILE, WEIGHTS_FILE, TicketClassifier
from training.inference.model_cleaning import write_cleaning

CONFIG_FILE = "training_config.json"


class ExportError(UserError):
    """The output directory cannot be (re)written."""


def is_model_dir(path: str | Path) -> bool:
    path = Path(path)
    return (path / WEIGHTS_FILE).is_file() and (path / LABELS_FILE).is_file()


def export_model(
    model: TicketClassifier,
    tokenizer: PreTrainedTokenizerBase,
    config: TrainConfig,
    metrics: dict[str, Any],
    out_dir: str | Path,
    issues: dict[str, Any] | None = None,
    similar: tuple[np.ndarray, list[dict[str, Any]]] | None = None,
) -> Path:
    """Save weights, tokenizer, labels, config, metrics and report into `out_dir`, and when
    given the ranked suspected label errors (`issues`, training/fit/label_issues.py) and the
    similar-ticket index (`similar`: vectors and tickets, training/inference/similar_index.py).

    Everything is written into a sibling temporary directory that then replaces `out_dir`, which
    may only be missing, empty, or an earlier model directory.
    """
    out_dir = Path(out_dir)
    check_output_dir(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        model.save(staging)
        tokenizer.save_pretrained(staging)
        config.to_json(staging / CONFIG_FILE)
        write_cleaning(staging, config.cleaning())
        write_report(staging, metrics, f"Ticket classifier: {out_dir.name}")
        if issues is not None:
            label_issues.write(staging, issues)
        if similar is not None:
            similar_index.write_index(staging, *similar)
        make_readable(staging)
        if out_dir.exists():
            retired = out_dir.with_name(f".{out_dir.name}.old")
            shutil.rmtree(retired, ignore_errors=True)
            out_dir.rename(retired)
            staging.rename(out_dir)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def check_output_dir(out_dir: str | Path) -> None:
    """Refuse to overwrite anything but an earlier model directory."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"output {out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not is_model_dir(out_dir):
        raise ExportError(
            f"output directory {out_dir} is not empty and holds no model; choose another --out"
        )
