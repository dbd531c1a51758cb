"""The help desks this service is connected to, built from its settings (docs/connectors.md)."""

from __future__ import annotations

from dataclasses import dataclass

from connectors.base import HelpDesk, Mode
from connectors.label_map import LabelMap, LabelMapError
from connectors.rt import RTClient
from connectors.zammad import ZammadClient
from connectors.znuny import ZnunyClient
from shim.settings import Settings, SettingsError


@dataclass(frozen=True)
class Connector:
    """One connected help desk: its mode, its client, and either the secret its webhooks are
    signed with or how often it is polled."""

    mode: Mode
    desk: HelpDesk
    webhook_secret: str | None = None
    poll_s: float | None = None


def build_connectors(settings: Settings) -> dict[str, Connector]:
    """The connectors that are on; a missing secret is a SettingsError naming it."""
    connectors: dict[str, Connector] = {}
    verify: bool | str = str(settings.connector_ca_bundle) if settings.connector_ca_bundle else True
    timeout = settings.connector_timeout_s
    secrets = settings.zammad_secrets()
    if secrets is not None and settings.zammad_url is not None:
        token, webhook_secret = secrets
        client = ZammadClient(settings.zammad_url, token, timeout, verify)
        connectors["zammad"] = Connector(settings.zammad_mode, client, webhook_secret)
    rt_token = settings.rt_token_value()
    if rt_token is not None and settings.rt_url is not None:
        rt = RTClient(
            settings.rt_url, rt_token, settings.rt_queues, settings.rt_priorities, timeout, verify
        )
        connectors["rt"] = Connector(settings.rt_mode, rt, poll_s=settings.rt_poll_s)
    znuny = settings.znuny_secrets()
    if znuny is not None and settings.znuny_url is not None:
        user, password, invoker_secret = znuny
        znuny_client = ZnunyClient(
            settings.znuny_url,
            user,
            password,
            settings.znuny_queues,
            settings.znuny_priorities,
            timeout,
            verify,
        )
        connectors["znuny"] = Connector(settings.znuny_mode, znuny_client, invoker_secret)
    return connectors


def label_map(settings: Settings) -> LabelMap:
    if settings.connector_label_map is None:
        return LabelMap()
    try:
        return LabelMap.from_file(settings.connector_label_map)
    except LabelMapError as exc:
        raise SettingsError(f"connector_label_map: {exc}") from exc
