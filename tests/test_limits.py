"""TorchServe's limits follow from the service's: config.properties agrees with the defaults."""

from __future__ import annotations

from shim.limits import max_forwarded_bytes, response_timeout_s, torchserve_properties
from shim.serving.torchserve import DEFAULT_CONFIG
from shim.settings import Settings


def written_properties() -> dict[str, str]:
    lines = DEFAULT_CONFIG.read_text(encoding="utf-8").splitlines()
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def test_config_properties_holds_what_the_default_settings_derive() -> None:
    derived = torchserve_properties(Settings())
    written = written_properties()
    assert {key: written.get(key) for key in derived} == derived


def test_larger_service_limits_raise_torchserve_s() -> None:
    default = Settings()
    larger = Settings(max_request_bytes=64 * 1024 * 1024, max_batch=512, torchserve_timeout_s=90.5)
    properties = torchserve_properties(larger)
    assert int(properties["max_request_size"]) == max_forwarded_bytes(larger) > 64 * 1024 * 1024
    assert int(properties["max_response_size"]) > int(
        torchserve_properties(default)["max_response_size"]
    )
    assert properties["default_response_timeout"] == "91" and response_timeout_s(larger) == 91
