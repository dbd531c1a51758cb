"""What to write to a ticket for one answer: in `suggest` mode an internal note only; in `route`
mode also each head's label that cleared its auto-route gate and has a target name. The note
lists every head's answer and, when the version keeps them, the most similar stored tickets."""

from __future__ import annotations

from typing import Any

from connectors.base import DESK_HEADS, Mode, WriteBack
from connectors.label_map import LabelMap

SIMILAR_LINES = 3  # similar stored tickets the note lists
SIMILAR_CHARS = 100  # of each one's text


def plan_write(
    ticket_id: str,
    answer: dict[str, Any],
    mode: Mode,
    label_map: LabelMap,
    names: dict[str, list[str]],
) -> WriteBack:
    """The write for `answer` (a classify answer: per head label, confidence, auto_route,
    top_k; model_version, prediction_id)."""
    fields: dict[str, str] = {}
    unmapped: list[str] = []
    lines = [f"ticketserve (model v{answer.get('model_version')}, {mode} mode):"]
    for head in DESK_HEADS:
        head_answer = answer.get(head)
        if not isinstance(head_answer, dict):
            continue
        label = str(head_answer["model_label"])
        target = label_map.target(head, label, names.get(head, []))
        routed = mode == "route" and bool(head_answer.get("auto_route")) and target is not None
        if routed:
            fields[head] = str(target)
        if target is None:
            unmapped.append(f"{head}={label}")
        top = ", ".join(f"{name} {p:.2f}" for name, p in head_answer.get("top_k", [])[:3])
        action = "set" if routed else "suggested"
        lines.append(
            f"- {head}: {label} ({head_answer['confidence']:.2f}, {action}"
            + ("" if target is not None else f"; no {head} of this help desk is named so")
            + ")"
            + (f"; top 3: {top}" if top else "")  # none in an answer rebuilt from the log
        )
    similar = answer.get("similar") or []
    if similar:
        lines.append("similar tickets:")
    for hit in similar[:SIMILAR_LINES]:
        labels = ", ".join(str(v) for v in hit.get("labels", {}).values())
        text = str(hit.get("text", ""))
        shown = text if len(text) <= SIMILAR_CHARS else text[: SIMILAR_CHARS - 1] + "…"
        lines.append(f"- {hit.get('id')} ({labels}; {hit.get('similarity', 0):.2f}): {shown}")
    lines.append(f"prediction {answer.get('prediction_id')}")
    return WriteBack(
        ticket_id=ticket_id,
        queue=fields.get("queue"),
        priority=fields.get("priority"),
        note="\n".join(lines),
        unmapped=unmapped,
    )
