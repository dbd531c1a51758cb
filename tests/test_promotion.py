"""The promotion rule: which trained version becomes the default, under each policy."""

from __future__ import annotations

import pytest

from shim.serving.versions import promotion_decision


@pytest.mark.parametrize("policy", ["not_worse", "always", "never"])
def test_the_first_version_is_always_made_default(policy):
    promoted, note = promotion_decision(policy, 1, 0.1, None, None)
    assert promoted and "first model version" in note


@pytest.mark.parametrize(
    ("policy", "score", "promoted"),
    [
        ("not_worse", 0.59, False),  # worse: the default stays
        ("not_worse", 0.60, True),  # a tie is not worse
        ("not_worse", 0.61, True),
        ("always", 0.10, True),
        ("always", 0.90, True),
        ("never", 0.10, False),
        ("never", 0.90, False),
    ],
)
def test_each_policy_promotes_exactly_when_it_says(policy, score, promoted):
    decided, note = promotion_decision(policy, 2, score, 1, 0.60)
    assert decided is promoted, note
    assert ("made default" in note) is promoted
    if policy == "not_worse" and not promoted:
        assert "activate version 2 to use it anyway" in note
