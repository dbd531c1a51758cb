"""Per-head metrics (scikit-learn), calibration error, and the human-readable report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, bins: int = 10
) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by bin size."""
    if len(confidence) == 0:
        return 0.0
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            error += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(error)


def reliability_bins(
    confidence: np.ndarray, correct: np.ndarray, bins: int = 10
) -> list[dict[str, float]]:
    """Per equal-width confidence bin with tickets: mean confidence, accuracy, count."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    out = []
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            out.append(
                {
                    "low": round(float(edges[b]), 2),
                    "high": round(float(edges[b + 1]), 2),
                    "confidence": round(float(confidence[in_bin].mean()), 6),
                    "accuracy": round(float(correct[in_bin].mean()), 6),
                    "count": int(in_bin.sum()),
                }
            )
    return out


def head_metrics(y_true: list[str], probs: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """Accuracy, macro/weighted F1, per-class P/R/F1, confusion matrix and ECE for one head."""
    # Imported here: the API process reads summaries from this module, and scikit-learn costs
    # it most of a second to start.
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
    )

    index = {name: i for i, name in enumerate(labels)}
    truth = np.asarray([index[y] for y in y_true], dtype=np.int64)
    predicted = probs.argmax(axis=1)
    ids = list(range(len(labels)))
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=ids, zero_division=0
    )
    return {
        "examples": len(truth),
        "accuracy": float(accuracy_score(truth, predicted)),
        "macro_f1": float(f1_score(truth, predicted, labels=ids, average="macro", zero_division=0)),
        "weighted_f1": float(
            f1_score(truth, predicted, labels=ids, average="weighted", zero_division=0)
        ),
        "majority_rate": float(np.bincount(truth, minlength=len(labels)).max() / len(truth)),
        "ece": expected_calibration_error(probs.max(axis=1), predicted == truth),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(labels)
        },
        "labels": list(labels),
        "confusion_matrix": confusion_matrix(truth, predicted, labels=ids).tolist(),
    }


def evaluate_heads(
    targets: dict[str, list[str]], probs: dict[str, np.ndarray], labels: dict[str, list[str]]
) -> dict[str, dict[str, Any]]:
    """`head_metrics` for every head that has targets."""
    return {head: head_metrics(targets[head], probs[head], labels[head]) for head in targets}


def mean_macro_f1(metrics: dict[str, dict[str, Any]]) -> float:
    """The model-selection score: macro-F1 averaged over heads."""
    return float(np.mean([m["macro_f1"] for m in metrics.values()]))


def write_report(directory: str | Path, metrics: dict[str, Any], title: str) -> None:
    """Write metrics.json, report.md and one confusion-matrix PNG per head of metrics['test']."""
    directory = Path(directory)
    (directory / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    lines = [f"# {title}", ""]
    for key in ("base_model", "train_seconds", "best_epoch", "epochs_run", "splits"):
        if key in metrics:
            lines.append(f"- {key.replace('_', ' ')}: {metrics[key]}")
    if "mode" in metrics:
        lines.append(f"- mode: {metrics['mode']['mode']} ({metrics['mode']['reason']})")
    if "cleaning" in metrics:
        lines.append(f"- cleaning: {cleaning_sentence(metrics['cleaning'])}")
    if metrics.get("feature_columns"):
        known = ", ".join(f"{c} ({n} values)" for c, n in metrics["feature_columns"].items())
        lines.append(f"- structured fields read beside the text: {known}")
    if "similar_tickets" in metrics:
        lines.append(f"- similar-ticket index: {metrics['similar_tickets']} stored tickets")
    for head, m in metrics["test"].items():
        picture = f"confusion_{head}.png"
        plot_confusion(m, directory / picture, f"{head} (test split)")
        lines += [
            "",
            f"## {head}",
            "",
            f"accuracy {m['accuracy']:.3f} · macro-F1 {m['macro_f1']:.3f} · "
            f"weighted-F1 {m['weighted_f1']:.3f} · ECE {m['ece']:.3f} · "
            f"majority-class rate {m['majority_rate']:.3f} · {m['examples']} examples",
            "",
        ]
        choice = (metrics.get("heads") or {}).get(head)
        if choice and "description" in choice:
            lines += [f"Fitted with: {choice_sentence(choice)}.", ""]
        if "reliability" in m:
            diagram = f"reliability_{head}.png"
            plot_reliability(m, directory / diagram, f"{head} (test split)")
            promise = (metrics.get("calibration") or {}).get(head, {})
            lines += [
                f"Calibration: ECE {m['ece_uncalibrated']:.3f} before, {m['ece']:.3f} after "
                f"(temperature fitted on {metrics.get('validation_source', 'validation')}).",
                "",
                f"Auto-routing: {gate_sentence(promise)} {held_out_gate_sentence(m['gate'])}",
                "",
                *class_gate_lines(promise, m["gate"]),
                f"![{head} reliability diagram]({diagram})",
                "",
            ]
        lines += [
            "| class | precision | recall | F1 | support |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {name} | {c['precision']:.3f} | {c['recall']:.3f} | {c['f1']:.3f} "
            f"| {c['support']} |"
            for name, c in m["per_class"].items()
        ]
        lines += ["", f"![{head} confusion matrix]({picture})"]
    lines += label_issue_lines(metrics.get("label_issues"))
    (directory / REPORT_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")


def label_issue_lines(issues: dict[str, Any] | None) -> list[str]:
    """The card's section on suspected label errors (training/fit/label_issues.py): per head, the
    rows flagged per given label; the rows themselves are in label_issues.json."""
    if not issues:
        return []
    lines = [
        "",
        "## Suspected label errors",
        "",
        f"Training rows whose given label their held-out scores contradict: {issues['method']}. "
        f"Scored: {issues['source']}. The rows, most suspect first, are in `label_issues.json` "
        "(`ticketserve label-issues`, GET /api/v1/models/{version}/label-issues).",
    ]
    for head, found in issues["heads"].items():
        if not found.get("available"):
            lines += ["", f"{head}: not available ({found.get('reason')})."]
            continue
        lines += [
            "",
            f"{head}: {found['flagged']} of {found['rows_scored']} rows flagged.",
        ]
        if found["per_class"]:
            lines += ["", "| given label | flagged |", "|---|---|"]
            lines += [f"| {label} | {count} |" for label, count in found["per_class"].items()]
    return lines


def cleaning_sentence(cleaning: dict[str, Any]) -> str:
    """What the model does to a text before reading it, in words."""
    done = ["mail read as a person does (HTML to text, newest message, no signature)"]
    if not cleaning.get("clean_mail", True):
        done = ["texts read as they come"]
    if cleaning.get("mask_personal_data", True):
        done.append("personal data masked")
    if patterns := cleaning.get("mask_patterns"):
        done.append("also masked: " + ", ".join(f"[{name}]" for name in patterns))
    return f"{'; '.join(done)} (training/text/cleaning.py version {cleaning.get('version')})"


def choice_sentence(choice: dict[str, Any]) -> str:
    """How cross-validation chose a head's setting, in words."""
    text = f"{choice['description']} (out-of-fold macro-F1 {choice['cross_validated_macro_f1']:.3f}"
    if choice.get("best_candidate") and choice["best_candidate"] != choice["description"]:
        text += (
            f"; the best, {choice['best_candidate']}, scored "
            f"{choice['best_cross_validated_macro_f1']:.3f}, not more than one standard error "
            f"({choice['standard_error']:.3f}, paired over the folds) above it, so the baseline "
            "recipe was kept"
        )
    return text + ")"


def gate_sentence(promise: dict[str, Any]) -> str:
    """What a head's auto-routing gate promises (training.fit.calibration.gate_promise), in
    words."""
    if "status" not in promise:  # a model from before the bound was kept
        threshold = promise.get("threshold")
        return "no gate." if threshold is None else f"gate at confidence >= {threshold:.3f}."
    target, level = promise["target_precision"], promise["confidence_level"]
    if promise.get("rule") == "class":
        if promise["status"] == "closed":
            return (
                f"one gate per predicted class, all closed: no class reaches precision "
                f"{target:.2f} with {level:.0%} confidence at any threshold, so no ticket is "
                "routed automatically."
            )
        return (
            f"one gate per predicted class (below): about {promise['expected_coverage']:.0%} of "
            f"tickets clear their class's threshold, at precision {promise['precision']:.3f} "
            f"(lower bound {promise['precision_lower_bound']:.3f} with {level:.0%} confidence; "
            f"target {target:.2f}; measured on {promise.get('examples', 'the')} held-out tickets)."
        )
    if promise["status"] == "open":
        return (
            f"the gate is open at confidence >= {promise['threshold']:.3f}: about "
            f"{promise['expected_coverage']:.0%} of tickets clear it, and their precision is at "
            f"least {promise['precision_lower_bound']:.3f} with {level:.0%} confidence (target "
            f"{target:.2f}; measured {promise['precision']:.3f} on "
            f"{promise.get('examples', 'the')} held-out tickets)."
        )
    best = promise.get("best_reachable")
    reach = (
        f" The best reachable: precision {best['precision']:.3f} (lower bound "
        f"{best['precision_lower_bound']:.3f}) on the {best['coverage']:.0%} of tickets at "
        f"confidence >= {best['threshold']:.3f}."
        if best
        else ""
    )
    return (
        f"the gate is closed: no confidence threshold reaches precision {target:.2f} with "
        f"{level:.0%} confidence, so no ticket is routed automatically.{reach}"
    )


def class_gate_lines(promise: dict[str, Any], gate: dict[str, Any]) -> list[str]:
    """The card's per-class table of the gate: each predicted class's threshold, and on the
    test split the share of the tickets predicted as it that cleared it and their precision;
    then the classes that reach the target at no threshold."""
    classes = gate.get("classes")
    if not classes or "target_precision" not in promise:
        return []
    per_class = gate.get("rule") == "class"
    lines = [
        "Per predicted class on the test split"
        + (": its own threshold." if per_class else " (the head's threshold for every class):"),
        "",
        "| predicted class | threshold | tickets | routed | coverage | precision |",
        "|---|---|---|---|---|---|",
    ]
    for name, c in classes.items():
        threshold = "never" if c["threshold"] is None else f"{c['threshold']:.3f}"
        precision = "n/a" if c["precision"] is None else f"{c['precision']:.3f}"
        lines.append(
            f"| {name} | {threshold} | {c['examples']} | {c['routed']} | {c['coverage']:.1%} "
            f"| {precision} |"
        )
    unreachable = promise.get("unreachable") or []
    target = promise["target_precision"]
    if unreachable and per_class:
        lines += [
            "",
            f"Cannot reach precision {target:.2f} at any threshold (out of fold), so never "
            f"routed automatically: {', '.join(unreachable)}.",
        ]
    elif unreachable:
        lines += [
            "",
            f"On their own (out of fold), these classes reach precision {target:.2f} at no "
            f"threshold, and a per-class gate (`gate: class`) would never route them: "
            f"{', '.join(unreachable)}.",
        ]
    return [*lines, ""]


def held_out_gate_sentence(gate: dict[str, Any]) -> str:
    """The gate's outcome on the test split, in words."""
    if gate.get("rule") == "class" and gate.get("routed"):
        return (
            f"On the test split {gate['coverage']:.1%} of tickets cleared their class's "
            f"threshold, at precision {gate['precision']:.3f}."
        )
    if gate.get("threshold") is None:
        return ""
    if not gate.get("routed"):
        return "On the test split no ticket cleared it."
    return (
        f"On the test split {gate['coverage']:.1%} of tickets cleared it, at precision "
        f"{gate['precision']:.3f}."
    )


def _figure(width: float, height: float) -> Any:
    """A bare Figure: renders with Agg, needs no display nor pyplot's global state. matplotlib
    is imported here, so the service (which only summarizes metrics) never loads it."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def plot_confusion(metrics: dict[str, Any], path: Path, title: str) -> None:
    from sklearn.metrics import ConfusionMatrixDisplay

    labels = metrics["labels"]
    size = max(4.0, 0.7 * len(labels) + 2)
    fig = _figure(size, size)
    ax = fig.subplots()
    ConfusionMatrixDisplay(np.asarray(metrics["confusion_matrix"]), display_labels=labels).plot(
        ax=ax, xticks_rotation=45, colorbar=False
    )
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_reliability(metrics: dict[str, Any], path: Path, title: str) -> None:
    """Accuracy against confidence per bin, before and after calibration."""
    fig = _figure(5, 5)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfectly calibrated")
    for key, ece, label in (
        ("reliability_uncalibrated", "ece_uncalibrated", "before"),
        ("reliability", "ece", "after"),
    ):
        bins = metrics.get(key) or []
        ax.plot(
            [b["confidence"] for b in bins],
            [b["accuracy"] for b in bins],
            marker="o",
            label=f"{label} (ECE {metrics[ece]:.3f})",
        )
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def summarize(metrics: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of a training run: mean macro-F1 and per-head accuracy/F1."""
    out: dict[str, Any] = {
        key: metrics.get(key) for key in ("train_seconds", "best_epoch", "epochs_run", "splits")
    }
    out["mode"] = (metrics.get("mode") or {}).get("mode")
    for split in ("validation", "test"):
        heads = metrics.get(split) or {}
        out[f"{split}_macro_f1"] = round(mean_macro_f1(heads), 4) if heads else None
        out[split] = {head: _head_summary(m) for head, m in heads.items()}
    return out


def _head_summary(m: dict[str, Any]) -> dict[str, Any]:
    keys = ("accuracy", "macro_f1", "weighted_f1", "ece", "ece_uncalibrated")
    summary: dict[str, Any] = {k: round(m[k], 4) for k in keys if k in m}
    if "gate" in m:
        summary["gate"] = {
            k: m["gate"][k] for k in ("target_precision", "threshold", "coverage", "precision")
        }
    return summary


def selection_score(metrics: dict[str, Any]) -> float:
    """Validation macro-F1 (mean over heads), or test when there was no validation split."""
    summary = summarize(metrics)
    score = summary["validation_macro_f1"]
    if score is None:
        score = summary["test_macro_f1"]
    return float(score or 0.0)
