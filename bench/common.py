"""What the training benchmarks share: the shared dataset's path and its fixed split."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from training.data import TicketData, split_tickets

DEFAULT_DATA = (
    Path(__file__).resolve().parents[2]
    / "shared/data/bueck_v3_4k/dataset-tickets-multi-lang3-4k.csv"
)
HEADS = ("queue", "priority")


def fixed_split(data: TicketData) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The data README's split: 80/20, stratified on queue, random_state=0."""
    return train_test_split(data.frame, test_size=0.2, random_state=0, stratify=data.frame["queue"])


def inner_splits(
    train_frame: pd.DataFrame, test_frame: pd.DataFrame, seed: int
) -> dict[str, pd.DataFrame]:
    """Train/validation from the fixed split's 80 % (a validation tenth, as `train` would take
    it); the 20 % stays the test split, never looked at while training or tuning."""
    inner = split_tickets(train_frame, "queue", val_fraction=0.1, test_fraction=0.0, seed=seed)
    return {"train": inner["train"], "validation": inner["validation"], "test": test_frame}
