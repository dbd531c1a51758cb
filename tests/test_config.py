"""TrainConfig validates itself and round-trips to JSON."""

from __future__ import annotations

import pytest

from training.config import ConfigError, TrainConfig


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
        ("base_model", " ", "base_model must be a model directory or name, got ' '"),
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
