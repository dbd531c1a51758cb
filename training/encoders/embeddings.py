"""Frozen-encoder embeddings of ticket texts, cached per encoder and text.

The `fast` mode embeds every training text once with the frozen encoder; the vectors are kept in
an SQLite file under the ticketserve cache (`embeddings.sqlite`), keyed by a fingerprint of the
encoder (its files, max length, pooling) and the SHA-256 of the text, so retraining after a new
upload embeds only the new tickets. Vectors are float32 bytes: nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from training.encoders.base_models import cache_dir
from training.inference.model import TicketClassifier, encode

CACHE_FILE = "embeddings.sqlite"
# Files of an encoder directory that decide its embeddings.
_FINGERPRINT_SUFFIXES = (".json", ".safetensors", ".bin", ".model", ".txt")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS embeddings (
    encoder TEXT NOT NULL,
    text_sha256 BLOB NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (encoder, text_sha256)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS measurements (name TEXT PRIMARY KEY, value REAL NOT NULL);
"""

EmbedProgress = Callable[[int, int, float], None]  # texts done, texts to embed, seconds left


def encoder_fingerprint(
    base_model: str, max_length: int, normalize: bool, precision: str = "fp32"
) -> str:
    """A key that changes whenever the embeddings of the same text could change."""
    # fp32's keys stay those written before the precision was a setting.
    suffix = "" if precision == "fp32" else f"|{precision}"
    digest = hashlib.sha256(f"{max_length}|{normalize}|mean{suffix}".encode())
    path = Path(base_model)
    if path.is_dir():
        for file in sorted(p for p in path.iterdir() if p.suffix in _FINGERPRINT_SUFFIXES):
            digest.update(file.name.encode())
            with file.open("rb") as stream:
                for block in iter(lambda: stream.read(1 << 20), b""):
                    digest.update(block)
    else:
        digest.update(base_model.encode())
    return digest.hexdigest()


class EmbeddingCache:
    """Embeddings by (encoder fingerprint, text) in one SQLite file."""

    def __init__(self, path: str | Path | None, encoder: str) -> None:
        self.path = Path(path) if path is not None else cache_dir() / CACHE_FILE
        self.encoder = encoder
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def get(self, texts: Sequence[str]) -> dict[int, np.ndarray]:
        """Cached vectors by position in `texts`."""
        found: dict[int, np.ndarray] = {}
        keys = [_key(text) for text in texts]
        positions: dict[bytes, list[int]] = {}
        for i, key in enumerate(keys):
            positions.setdefault(key, []).append(i)
        unique = list(positions)
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            rows = self._db.execute(
                "SELECT text_sha256, vector FROM embeddings WHERE encoder = ? AND text_sha256 IN "
                f"({','.join('?' * len(chunk))})",
                [self.encoder, *chunk],
            )
            for key, blob in rows:
                vector = np.frombuffer(blob, dtype=np.float32)
                for i in positions[key]:
                    found[i] = vector
        return found

    def put(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?)",
                [
                    (self.encoder, _key(text), np.asarray(v, dtype=np.float32).tobytes())
                    for text, v in zip(texts, vectors, strict=True)
                ],
            )

    def measurement(self, name: str) -> float | None:
        """A rate measured by an earlier run on this machine (e.g. seconds per unit of work)."""
        row = self._db.execute("SELECT value FROM measurements WHERE name = ?", (name,)).fetchone()
        return float(row[0]) if row else None

    def record(self, name: str, value: float) -> None:
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO measurements VALUES (?, ?)", (name, value))

    def close(self) -> None:
        self._db.close()


def _key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


@torch.inference_mode()
def embed_texts(
    model: TicketClassifier,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    cache: EmbeddingCache | None = None,
    batch_size: int = 32,
    progress: EmbedProgress | None = None,
) -> tuple[np.ndarray, int]:
    """The pooled embedding of every text (rows in order) and how many were computed now."""
    device = next(model.parameters()).device
    hidden = model.encoder.config.hidden_size
    out = np.zeros((len(texts), hidden), dtype=np.float32)
    cached = cache.get(texts) if cache is not None else {}
    for i, vector in cached.items():
        out[i] = vector
    missing = [i for i in range(len(texts)) if i not in cached]
    # Token counts order the batches (little padding) and turn the measured time per token of
    # the batches so far into the time left.
    tokens = dict(
        zip(
            missing,
            _token_counts(tokenizer, [texts[i] for i in missing], model.max_length),
            strict=True,
        )
    )
    missing.sort(key=tokens.__getitem__)
    batches = [missing[i : i + batch_size] for i in range(0, len(missing), batch_size)]
    # A batch of median length goes first, so the first measurement speaks for the whole.
    if batches:
        batches.insert(0, batches.pop(len(batches) // 2))
    total_tokens, done_tokens, done = sum(tokens.values()), 0, 0
    model.eval()
    started = time.monotonic()
    for rows in batches:
        batch = encode(tokenizer, [texts[i] for i in rows], model.max_length, device)
        out[rows] = model.pool(batch["input_ids"], batch["attention_mask"]).float().cpu().numpy()
        if cache is not None:
            cache.put([texts[i] for i in rows], out[rows])
        done_tokens += sum(tokens[i] for i in rows)
        done += len(rows)
        if progress is not None:
            per_token = (time.monotonic() - started) / done_tokens
            progress(done, len(missing), per_token * (total_tokens - done_tokens))
    return out, len(missing)


def _token_counts(
    tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int
) -> list[int]:
    if not texts:
        return []
    ids = tokenizer(texts, truncation=True, max_length=max_length, return_attention_mask=False)
    return [len(row) for row in ids["input_ids"]]
