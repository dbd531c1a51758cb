"""The help desks this service is connected to, built from its settings (docs/connectors.md)."""

from __future__ import annotations

from dataclasses import dataclass

from connectors.base import HelpDesk, Mode
from connectors.label_map import LabelMap, LabelMapError
from connectors.zammad import ZammadClient
from shim.settings import Settings, SettingsError


@dataclass(frozen=True)
class Connector:
    """One connected help desk: its mode, the secret its webhooks are signed with, its client."""

    mode: Mode
    webhook_secret: str
    desk: HelpDesk


def build_connectors(settings: Settings) -> dict[str, Connector]:
    """The connectors that are on; a missing secret is a SettingsError naming it."""
    connectors: dict[str, Connector] = {}
    secrets = settings.zammad_secrets()
    if secrets is not None and settings.zammad_url is not None:
        token, webhook_secret = secrets
        verify: bool | str = (
            str(settings.connector_ca_bundle) if settings.connector_ca_bundle else True
        )
        client = ZammadClient(settings.zammad_url, token, settings.connector_timeout_s, verify)
        connectors["zammad"] = Connector(settings.zammad_mode, webhook_secret, client)
    return connectors


def label_map(settings: Settings) -> LabelMap:
    if settings.connector_label_map is None:
        return LabelMap()
    try:
        return LabelMap.from_file(settings.connector_label_map)
    except LabelMapError as exc:
        raise SettingsError(f"connector_label_map: {exc}") from exc
