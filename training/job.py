"""Run one training job as a child process: `python -m training.job SPEC.json`.

The spec is a JSON object `{"data_files": [...], "config": {...TrainConfig...}, "out_dir": ...}`
(optionally `"nice"`: a niceness increment, so serving stays responsive during training;
`"superseded"`: file name -> line numbers of rows that a correction replaces, left out;
`"feedback_ids"`: the correction id of each line of the feedback file). Every data file holds
normalised tickets as JSON Lines (`text` plus one column per head); they are concatenated and
validated again, so label spellings from different uploads are unified. Each row keeps an id a
user can find it by (training/fit/label_issues.py): `<dataset id>:<line>` for a stored upload,
`feedback:<correction id>` for a correction.

The process talks back through stdout, one JSON event per line:

    {"event": "started", "rows": ..., "heads": [...], "report": {...}}
    {"event": "plan", "mode": "fast", "reason": ..., "expected_s": ...}
    {"event": "progress", "epoch": ..., "step": ..., "total_steps": ..., "loss": ..., ...}
    {"event": "done", "model_dir": ..., "metrics": {...}}
    {"event": "error", "kind": ..., "message": ...}

and exits 0 after `done`, non-zero after `error`. Anything else that would reach stdout (library
prints) is sent to stderr so the event stream stays parseable. This module imports nothing from
`shim`: the service depends on training, never the other way round.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pandas as pd

from training.config import TrainConfig
from training.encoders.base_models import check_base_model
from training.errors import ConfigError, UserError
from training.text.cleaning import CleaningSettings
from training.text.data import FIELDS_COLUMN, Columns, DataError, TicketData, read_table, validate

logger = logging.getLogger(__name__)

FEEDBACK_FILE = "feedback.jsonl"  # the corrections' file in a job (shim/store/feedback.py)

USER_ERRORS = (UserError, FileNotFoundError)


@dataclass
class JobSpec:
    """What to train on, with which hyper-parameters, and where to write the model."""

    data_files: list[Path]
    config: TrainConfig
    out_dir: Path
    nice: int = 0
    superseded: dict[str, list[int]] = field(default_factory=dict)
    feedback_ids: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, path: str | Path) -> JobSpec:
        """Read and validate a spec file written by the service."""
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read job spec {path}: {exc}") from exc
        if not isinstance(raw, dict) or not raw.get("data_files") or not raw.get("out_dir"):
            raise ConfigError(f"job spec {path} needs 'data_files' and 'out_dir'")
        return cls(
            data_files=[Path(p) for p in raw["data_files"]],
            config=TrainConfig.from_dict(raw.get("config") or {}),
            out_dir=Path(raw["out_dir"]),
            nice=int(raw.get("nice", 0)),
            superseded={str(k): [int(i) for i in v] for k, v in raw.get("superseded", {}).items()},
            feedback_ids=[str(i) for i in raw.get("feedback_ids", [])],
        )


class EventWriter:
    """Writes one flushed JSON line per event to the stream the parent reads."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.lock = threading.Lock()

    def emit(self, event: str, **fields: Any) -> None:
        """Write one event as a JSON line and flush it."""
        line = json.dumps({"event": event, **fields}, ensure_ascii=False, default=str)
        with self.lock:
            self.stream.write(line + "\n")
            self.stream.flush()


def load_job_data(
    files: list[Path],
    min_class_examples: int,
    label_columns: list[str] | None = None,
    cleaning: CleaningSettings | None = None,
    superseded: dict[str, list[int]] | None = None,
    feedback_ids: list[str] | None = None,
    feature_columns: list[str] | None = None,
) -> TicketData:
    """Concatenate the stored datasets and validate them as one table; the heads are
    `label_columns`, else every head stored; `feature_columns` are read from the rows' stored
    fields (a row without one: unknown). The lines `superseded` names (per file name) are left
    out; every row keeps its id in a `row_id` column."""
    frames = []
    for path in files:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise DataError(f"cannot read stored dataset {path.name}: {exc.strerror}") from exc
        frame = read_table(raw, "jsonl", source=path.name)
        lines = range(1, len(frame) + 1)
        if path.name == FEEDBACK_FILE and feedback_ids and len(feedback_ids) == len(frame):
            frame["row_id"] = [f"feedback:{i}" for i in feedback_ids]
        else:
            frame["row_id"] = [f"{path.stem}:{line}" for line in lines]
        dropped = set((superseded or {}).get(path.name, ()))
        frames.append(frame[[line not in dropped for line in lines]])
    table = pd.concat(frames, ignore_index=True)
    row_ids = table.pop("row_id").tolist()
    stored_fields = (
        table.pop(FIELDS_COLUMN).tolist() if FIELDS_COLUMN in table else [None] * len(table)
    )
    # A stored dataset holds the text, one column per head named after it, and the rows'
    # fields when they were uploaded with feature columns.
    heads = label_columns or [str(column) for column in table.columns if column != "text"]
    for column in feature_columns or []:
        values = [(f or {}).get(column, "") if isinstance(f, dict) else "" for f in stored_fields]
        if not any(values):
            raise DataError(
                f"feature_columns: no stored ticket has a {column!r} field; upload the data "
                f"with ?feature_columns={column}"
            )
        table[column] = values
    columns = Columns(text="text", labels=tuple(heads), features=tuple(feature_columns or ()))
    data = validate(table, "stored training data", columns, min_class_examples, cleaning=cleaning)
    data.frame["row_id"] = [row_ids[row - 1] for row in data.frame["row"]]
    return data


def run(spec: JobSpec, events: EventWriter) -> None:
    """Load, train and export; progress and the result go out as events."""
    config = spec.config
    check_base_model(config.base_model)  # a missing encoder fails in a second, before torch loads
    from training.train import train  # torch and transformers load here, after the spec is ok

    data = load_job_data(
        spec.data_files,
        config.min_class_examples,
        config.label_columns,
        config.cleaning(),
        spec.superseded,
        spec.feedback_ids,
        config.feature_columns,
    )
    events.emit(
        "started",
        pid=os.getpid(),
        rows=len(data.frame),
        heads=list(data.heads),
        report=data.report.to_dict(),
    )
    result = train(
        data,
        spec.config,
        spec.out_dir,
        progress=lambda p: events.emit("progress", **p.to_dict()),
        on_plan=lambda plan: events.emit("plan", **plan),
    )
    events.emit("done", model_dir=str(result.model_dir), metrics=result.metrics)


def watch_parent(parent_pid: int, interval_s: float = 1.0) -> None:
    """Exit when the service that started this job dies, so no orphan keeps training."""
    while True:
        time.sleep(interval_s)
        if os.getppid() != parent_pid:
            os._exit(3)


def main(argv: list[str] | None = None) -> int:
    """Run the job named by the spec path in `argv`; returns the exit status."""
    args = sys.argv[1:] if argv is None else argv
    # Events go to the real stdout; stray prints from libraries go to stderr instead.
    events = EventWriter(sys.stdout)
    sys.stdout = sys.stderr
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if len(args) != 1:
        events.emit("error", kind="usage", message="usage: python -m training.job SPEC.json")
        return 2
    threading.Thread(target=watch_parent, args=(os.getppid(),), daemon=True).start()
    try:
        spec = JobSpec.from_json(args[0])
        if spec.nice:
            os.nice(spec.nice)
        run(spec, events)
    except USER_ERRORS as exc:
        events.emit("error", kind=type(exc).__name__, message=str(exc))
        return 1
    except KeyboardInterrupt:
        events.emit("error", kind="interrupted", message="training was interrupted")
        return 130
    except Exception as exc:  # a bug: report it, with the traceback on stderr
        logger.exception("training failed")
        events.emit("error", kind=type(exc).__name__, message=f"{type(exc).__name__}: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    from training.cli import exit_with

    exit_with(main())
