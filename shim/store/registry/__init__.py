"""The registry under the data directory: the database of datasets, jobs, versions, predictions,
feedback and the help-desk connectors' state, plus the files it names.

Layout of the data directory:

    registry.sqlite3        the database (SQLite, the default)
    datasets/<id>.jsonl     one upload's normalised tickets (`text` + one key per head)
    jobs/<id>/              a job's spec, its data (hard links), its log, its model while training
    models/v<N>/            a published model directory
    model_store/            the .mar archives TorchServe loads

A dataset file is written to a temporary name, fsynced and renamed before its row is committed,
so a crash never shows half a dataset; an orphan file left by a crash is removed at start-up.
SQLite runs in WAL mode with synchronous=FULL: a committed upload survives a kill.

Modules: `tables` (every table, one place), `database` (engine, transactions, schema upgrades
with Alembic, after `legacy` for registries from before it), one module per concern (`datasets`,
`jobs`, `versions`, `predictions`, `feedback`, `quality`), and `store` composing them.
"""

from shim.store.registry.database import SCHEMA_VERSION, RegistryError
from shim.store.registry.records import (
    DatasetRecord,
    FeedbackRecord,
    PredictionRecord,
    VersionRecord,
    utcnow,
)
from shim.store.registry.store import PRIVATE_DIR, Store

__all__ = [
    "PRIVATE_DIR",
    "SCHEMA_VERSION",
    "DatasetRecord",
    "FeedbackRecord",
    "PredictionRecord",
    "RegistryError",
    "Store",
    "VersionRecord",
    "utcnow",
]
