"""TrainConfig validates itself and round-trips to JSON."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from training.config import TrainConfig
from training.config_flags import add_config_flags, config_overrides, markdown_table
from training.errors import ConfigError


def test_round_trip(tmp_path):
    config = TrainConfig(epochs=7, learning_rate=3e-5, head_weights={"priority": 2.0})
    config.to_json(tmp_path / "c.json")
    assert TrainConfig.from_json(tmp_path / "c.json") == config


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("epochs", 0, r"epochs must be an integer in \[1, 100\], got 0"),
        ("epochs", True, r"epochs must be an integer in \[1, 100\], got True"),
        ("epochs", 101, r"epochs must be an integer in \[1, 100\], got 101"),
        ("batch_size", 2.5, r"batch_size must be an integer in \[1, 512\], got 2.5"),
        ("max_length", 100_000, r"max_length must be an integer in \[8, 512\], got 100000"),
        ("seed", 2**32, r"seed must be an integer in \[0, 4294967295\], got 4294967296"),
        ("num_threads", 10_000, r"num_threads must be an integer in \[0, 256\]"),
        ("top_k", 0, r"top_k must be an integer in \[1, 100\]"),
        ("patience", 1000, r"patience must be an integer in \[0, 100\]"),
        ("min_class_examples", 0, r"min_class_examples must be an integer in \[1, 100000\]"),
        ("learning_rate", 0, r"learning_rate must be a number in \(0, 1\), got 0"),
        ("learning_rate", float("nan"), r"learning_rate must be a number in \(0, 1\), got nan"),
        ("dropout", 1.0, r"dropout must be a number in \[0, 1\), got 1.0"),
        ("val_fraction", 0.6, r"val_fraction must be a number in \[0, 0.5\), got 0.6"),
        ("base_model", " ", "base_model must be a model directory or name of 1 to 200 characters"),
        ("head_weights", {"queue": -1}, "head_weights must be a mapping of at most 8 head"),
        ("class_weighting", "yes", "class_weighting must be true, false or null, got 'yes'"),
    ],
)
def test_bad_values_are_named(field, value, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**{field: value})


def test_unknown_keys_are_named():
    with pytest.raises(ConfigError, match="unknown training option\\(s\\): epochz, lr"):
        TrainConfig.from_dict({"epochz": 3, "lr": 0.1})


def test_unreadable_file_is_named(tmp_path):
    (tmp_path / "c.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="c.json must be a JSON object"):
        TrainConfig.from_json(tmp_path / "c.json")


def test_the_docs_table_is_the_generated_one():
    docs = (Path(__file__).resolve().parents[1] / "docs/api.md").read_text(encoding="utf-8")
    between = docs.split("<!-- training-settings:begin -->\n")[1].split("<!-- training-settings")[0]
    assert between == markdown_table()
    assert markdown_table().count("\n") == len(TrainConfig.model_fields) + 2


def test_every_setting_is_a_flag_with_its_bound():
    parser = argparse.ArgumentParser()
    add_config_flags(parser)
    text = parser.format_help()
    for name in TrainConfig.model_fields:
        assert f"--{name.replace('_', '-')}" in text
    assert "an integer in [1, 100]" in text and "a number in (0, 1)" in text
    args = parser.parse_args(["--epochs", "3", "--no-lexical", "--head-weights", "priority=2"])
    assert config_overrides(args) == {
        "epochs": 3,
        "lexical": False,
        "head_weights": {"priority": 2.0},
    }
    assert TrainConfig.from_dict(config_overrides(args)).head_weight("priority") == 2.0


def test_the_api_schema_carries_the_bounds():
    from shim.schemas import TrainRequest

    properties = TrainRequest.model_json_schema()["properties"]
    assert properties["epochs"]["anyOf"][0] == {"type": "integer", "minimum": 1, "maximum": 100}
    assert properties["learning_rate"]["anyOf"][0]["exclusiveMaximum"] == 1
    assert properties["linear_c"]["anyOf"][0]["maxItems"] == 8
