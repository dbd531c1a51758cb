"""TorchServe's limits, derived from the service's own (one home for each bound).

The API refuses a request larger than its settings allow (`max_request_bytes`, `max_batch`,
`max_ticket_chars`) before TorchServe sees it. Whatever it accepts and forwards must then never be
refused by TorchServe, and no batch may outlive TorchServe's patience while the API still waits
for it, so the service's private TorchServe gets the limits computed here instead of fixed ones.
`config.properties` (which `torchserve --start` reads directly) holds the values these give for
the default settings; a test keeps the two in agreement.

torchserve_properties(settings) -> {property: value}   for a private instance's config.properties
serving_settings(settings) -> ServingSettings          what the service writes into its archives
"""

from __future__ import annotations

import math

from handlers.ticket_requests import MAX_SIMILAR
from shim.settings import Settings
from training.export.archive import ServingSettings

# What the API adds around each ticket it forwards (keys, quotes, separators), and around the
# whole body. Forwarded JSON is never longer than what came in otherwise: it is written as UTF-8
# (ensure_ascii=False), so every character takes at most the bytes it took in the request.
FORWARD_BYTES_PER_TICKET = 256
FORWARD_BYTES_PER_REQUEST = 4096
# The largest answer per ticket: every head's label, confidence, threshold and top-k list, and
# the most similar tickets a request may ask for, each an id, up to 8 heads' names and labels
# (200 characters, up to 4 bytes each) and an excerpt of 280 characters
# (training/inference/similar_index.py): at most 9 KiB.
ANSWER_BYTES_PER_TICKET = 64 * 1024 + MAX_SIMILAR * 9 * 1024
# TorchServe's own floor for request and answer bodies (its default is 6.5 MB; ours is 4 MiB).
TORCHSERVE_MIN_BODY_BYTES = 4 * 1024 * 1024


def max_forwarded_bytes(settings: Settings) -> int:
    """The largest body the API sends to TorchServe for a request it accepted."""
    return (
        settings.max_request_bytes
        + settings.max_batch * FORWARD_BYTES_PER_TICKET
        + FORWARD_BYTES_PER_REQUEST
    )


def response_timeout_s(settings: Settings) -> int:
    """TorchServe waits for a batch at least as long as the API waits for TorchServe: the API
    gives up first (503) and the worker lives on, rather than being restarted mid-answer."""
    return max(ServingSettings().response_timeout_s, math.ceil(settings.torchserve_timeout_s))


def torchserve_properties(settings: Settings) -> dict[str, str]:
    """The config.properties values a private TorchServe of this service must have."""
    return {
        "max_request_size": str(max(TORCHSERVE_MIN_BODY_BYTES, max_forwarded_bytes(settings))),
        "max_response_size": str(
            max(TORCHSERVE_MIN_BODY_BYTES, settings.max_batch * ANSWER_BYTES_PER_TICKET)
        ),
        "default_response_timeout": str(response_timeout_s(settings)),
    }


def serving_settings(settings: Settings) -> ServingSettings:
    """Archive settings for a version this service publishes (the response timeout travels in
    each archive's model-config.yaml, where it wins over config.properties)."""
    return ServingSettings(response_timeout_s=response_timeout_s(settings))
