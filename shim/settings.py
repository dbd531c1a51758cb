"""Service settings: one pydantic-settings model, filled from `TICKETSERVE_*` variables.

Each field's default and bound is defined here once. `Settings.from_env()` reads the environment
and, when given, an environment file of the same `TICKETSERVE_*=value` lines (the systemd unit's
`/etc/ticketserve/ticketserve.env`); command-line flags override both, the environment overrides
the file. A bad value is a SettingsError that names the variable. Nothing is read at import time,
and `Settings(...)` alone reads nothing (the tests build it from values).
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic_settings
from pydantic import (
    Field,
    PrivateAttr,
    SecretStr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError

from connectors.base import Mode as ConnectorMode
from connectors.znuny import DEFAULT_PRIORITIES as ZNUNY_PRIORITIES
from training.config import TrainConfig
from training.encoders.base_models import CACHE_ENV
from training.errors import ConfigError
from training.text.cleaning import CleaningSettings
from training.text.text_rules import MAX_TICKET_CHARS

ENV_PREFIX = "TICKETSERVE_"
LOOPBACK_NAMES = ("localhost",)
TICKET_CHARS_LIMIT = 1_000_000  # the most max_ticket_chars may be set to

Promotion = Literal["not_worse", "always", "never"]
DeskName = Annotated[str, StringConstraints(min_length=1, max_length=200)]  # a queue, a priority
LogFormat = Literal["text", "json"]


# The databases the registry is tested on (a URL's backend name).
DATABASES = ("sqlite", "postgresql")


def check_database_url(value: str) -> str:
    """A database URL the registry can use; a ValueError says why not (never the password)."""
    try:
        url = make_url(value)
    except ArgumentError:
        raise ValueError("not a database URL, e.g. postgresql+psycopg://user@host/name") from None
    if url.get_backend_name() not in DATABASES:
        raise ValueError(
            f"the registry is kept in {' or '.join(DATABASES)}, not {url.get_backend_name()!r}"
        )
    return value


class SettingsError(ValueError):
    """A setting is missing or unusable; the message names it."""


class Settings(BaseSettings):
    """Everything the /api/v1 service can be configured with."""

    model_config = SettingsConfigDict(extra="forbid", frozen=True, env_prefix=ENV_PREFIX)

    host: str = Field("127.0.0.1", description="address the API listens on")
    port: int = Field(8000, ge=0, le=65535, description="API port (0: any free port)")
    data_dir: Path = Field(Path("var"), description="registry, datasets, models and archives")
    database_url: str | None = Field(
        None,
        max_length=2000,
        description="the registry's database, a SQLAlchemy URL such as "
        "postgresql+psycopg://ticketserve@db.example.com/ticketserve (None: SQLite in the data "
        "directory)",
    )
    shared_dir: Path | None = Field(
        None,
        description="uploads, model directories and archives, on a volume every replica mounts "
        "(None: the data directory)",
    )
    training_lease_s: int = Field(
        30,
        ge=5,
        le=3600,
        description="seconds a replica's hold on the training job lasts unless renewed (it "
        "renews every third of it): a stopped replica's job is failed and freed after this",
    )
    replica_sync_s: int = Field(
        5,
        ge=1,
        le=300,
        description="seconds between two looks at the registry for another replica's new "
        "default version and for a training job whose replica stopped",
    )
    api_key: str | None = Field(None, description="Bearer key for /api/v1 (None: no auth)")
    api_key_file: Path | None = Field(None, description="file holding the API key")
    max_upload_bytes: int = Field(
        50 * 1024 * 1024,
        ge=1,
        le=2**34,
        description="largest upload body (train-data, classify-jobs)",
    )
    max_request_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, le=2**30, description="largest body of every other request"
    )
    max_ticket_chars: int = Field(
        MAX_TICKET_CHARS, ge=1, le=TICKET_CHARS_LIMIT, description="longest ticket text accepted"
    )
    max_batch: int = Field(64, ge=1, le=1024, description="most tickets in one classify request")
    max_classify_job_rows: int = Field(
        1_000_000, ge=1, le=100_000_000, description="most tickets in one classify job's file"
    )
    model_name: str = Field("ticket", description="model name inside TorchServe")
    max_loaded_versions: int = Field(
        2, ge=1, le=64, description="versions kept registered in TorchServe (others load on use)"
    )
    promotion: Promotion = Field(
        "not_worse",
        description="make a new version the default: when its validation macro-F1 is not "
        "lower than the default's, always, or never",
    )
    confidence_thresholds: dict[str, float] = Field(
        default_factory=dict, description="head -> minimum confidence, e.g. queue=0.4"
    )
    target_precision: dict[str, float] = Field(
        default_factory=dict,
        description="head -> precision the auto-routing gate must reach on each version's "
        "validation split, e.g. queue=0.95 (instead of a raw threshold; a head with neither "
        "uses the gate its model was trained with, at 0.90 by default)",
    )
    fallback_labels: dict[str, str] = Field(
        default_factory=lambda: {"queue": "Unclassified"},
        description="head -> label shown instead of a guess below the threshold (a head "
        "without one keeps the guess, marked low-confidence)",
    )
    train_defaults: dict[str, Any] = Field(
        default_factory=dict,
        description="TrainConfig values used when POST /train does not give them; their "
        "cleaning settings (clean_mail, mask_personal_data, mask_patterns) also clean every "
        "text the service classifies or stores",
    )
    train_nice: int = Field(
        0, ge=0, le=19, description="niceness of the training process (raise to favour serving)"
    )
    torchserve_timeout_s: float = Field(
        30.0, gt=0, le=3600, description="timeout of one TorchServe call"
    )
    torchserve_start_timeout_s: float = Field(
        180.0, gt=0, le=3600, description="TorchServe start-up"
    )
    ts_config: Path | None = Field(
        None, description="TorchServe config.properties (None: the project's one)"
    )
    retry_after_s: int = Field(10, ge=1, le=3600, description="Retry-After on 503 answers")
    log_format: LogFormat = Field(
        "text", description="service log lines: text, or one JSON object per line (json)"
    )
    prediction_retention_count: int = Field(
        100_000, ge=1, le=100_000_000, description="classify answers kept for feedback, newest"
    )
    prediction_retention_days: int = Field(
        30, ge=1, le=3650, description="days a classify answer is kept for feedback"
    )
    store_texts: bool = Field(
        True,
        description="keep classified ticket texts for feedback (false: only their sha256; "
        "feedback must then send the text again)",
    )

    max_feedback_rows: int = Field(
        1_000_000,
        ge=1,
        le=100_000_000,
        description="corrections stored at most; beyond, POST /feedback answers 409 until some "
        "are deleted",
    )
    drift_window: int = Field(
        500, ge=10, le=100_000, description="newest answers of a version the drift watch reads"
    )
    drift_min_predictions: int = Field(
        200,
        ge=10,
        le=100_000,
        description="answers a version needs in its window before it gets a drift score",
    )
    drift_threshold: float = Field(
        0.3,
        gt=0,
        le=1,
        description="drift score (Jensen-Shannon distance, 0..1) above which a head drifts",
    )
    drift_check_every: int = Field(
        50, ge=1, le=100_000, description="answers between two drift checks of a version"
    )
    retrain_after_feedback: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description="start a training job when this many corrections arrived since the last "
        "job (None: never)",
    )
    retrain_when_drift: bool = Field(
        False,
        description="start a training job when the default version starts drifting and "
        "labelled data arrived since the last job",
    )

    @field_validator("api_key")
    @classmethod
    def _strip_key(cls, value: str | None) -> str | None:
        """Surrounding whitespace is no part of a key; a blank key is no key."""
        return value.strip() or None if value is not None else None

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str | None) -> str | None:
        return None if value is None else check_database_url(value)

    @field_validator("confidence_thresholds")
    @classmethod
    def _thresholds_in_range(cls, value: dict[str, float]) -> dict[str, float]:
        for head, threshold in value.items():
            if not 0.0 <= threshold <= 1.0:
                raise ValueError(f"threshold for {head!r} must be in [0, 1], got {threshold}")
        return value

    @field_validator("target_precision")
    @classmethod
    def _precision_in_range(cls, value: dict[str, float]) -> dict[str, float]:
        for head, target in value.items():
            if not 0.0 < target <= 1.0:
                raise ValueError(f"target precision for {head!r} must be in (0, 1], got {target}")
        return value

    zammad_url: str | None = Field(
        None,
        max_length=2000,
        pattern=r"^https?://",
        description="Zammad's base URL, e.g. https://desk.example.com (None: no Zammad)",
    )
    zammad_token: SecretStr | None = Field(None, description="Zammad API token (ticket.agent)")
    zammad_token_file: Path | None = Field(None, description="file holding the Zammad token")
    zammad_webhook_secret: SecretStr | None = Field(
        None, description="the Zammad webhook's HMAC SHA1 signature token"
    )
    zammad_webhook_secret_file: Path | None = Field(
        None, description="file holding the webhook's signature token"
    )
    zammad_mode: ConnectorMode = Field(
        "suggest",
        description="off; suggest: an internal note with the answer; route: also set group "
        "and priority where the head's gate says auto_route",
    )
    rt_url: str | None = Field(
        None,
        max_length=2000,
        pattern=r"^https?://",
        description="Request Tracker's base URL, e.g. https://rt.example.com (None: no RT)",
    )
    rt_token: SecretStr | None = Field(None, description="an RT auth token of the router's user")
    rt_token_file: Path | None = Field(None, description="file holding the RT token")
    rt_queues: list[DeskName] = Field(
        ["General"],
        min_length=1,
        max_length=100,
        description="the RT queues whose new tickets are routed (comma-separated)",
    )
    rt_mode: ConnectorMode = Field(
        "suggest",
        description="off; suggest: a comment with the answer; route: also set Queue and "
        "Priority where the head's gate says auto_route",
    )
    rt_poll_s: float = Field(
        30.0, ge=1, le=3600, description="seconds between two polls of RT for new tickets"
    )
    rt_priorities: dict[str, int] = Field(
        {"Low": 0, "Medium": 50, "High": 100},
        description="RT's priority names and numbers (its %PriorityAsString)",
    )
    znuny_url: str | None = Field(
        None,
        max_length=2000,
        pattern=r"^https?://",
        description="the URL of Znuny's ticketserve web service, e.g. https://desk.example.com"
        "/otrs/nph-genericinterface.pl/Webservice/TicketServe (None: no Znuny)",
    )
    znuny_user: str | None = Field(
        None, min_length=1, max_length=200, description="the Znuny agent the connector logs in as"
    )
    znuny_password: SecretStr | None = Field(None, description="that Znuny agent's password")
    znuny_password_file: Path | None = Field(None, description="file holding the password")
    znuny_webhook_secret: SecretStr | None = Field(
        None, description="the secret Znuny's invokers send (BasicAuth password or header)"
    )
    znuny_webhook_secret_file: Path | None = Field(
        None, description="file holding the invokers' secret"
    )
    znuny_mode: ConnectorMode = Field(
        "suggest",
        description="off; suggest: an internal note and the confidence field; route: also "
        "queue and priority where the head's gate says auto_route",
    )
    znuny_queues: list[DeskName] = Field(
        default_factory=list,
        max_length=1000,
        description="Znuny's queue names a model label may equal ignoring case (comma-separated;"
        " Znuny's REST connector cannot list them; the label map names others)",
    )
    znuny_priorities: list[DeskName] = Field(
        list(ZNUNY_PRIORITIES),
        max_length=100,
        description="Znuny's priority names (comma-separated; a fresh install's by default)",
    )
    connector_label_map: Path | None = Field(
        None,
        description='JSON file: model label -> help-desk name per head, e.g. {"priority": '
        '{"high": "3 high"}} (default: names equal ignoring case)',
    )
    connector_timeout_s: float = Field(
        10.0, gt=0, le=300, description="timeout of every call to a help desk"
    )
    connector_ca_bundle: Path | None = Field(
        None, description="CA certificates to verify help desks' TLS with (default: the system's)"
    )
    outbox_max_attempts: int = Field(
        50, ge=1, le=10_000, description="tries of one write-back before it is given up"
    )
    outbox_max_backoff_s: float = Field(
        300.0, gt=0, le=86_400, description="longest wait between two tries of a write-back"
    )

    _cleaning: CleaningSettings = PrivateAttr(default_factory=CleaningSettings)

    @field_validator("train_defaults")
    @classmethod
    def _train_defaults_valid(cls, value: dict[str, Any]) -> dict[str, Any]:
        """Checked whole at start, not at the first POST /train."""
        try:
            TrainConfig.from_dict(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _cleaning_settings(self) -> Settings:
        self._cleaning = TrainConfig.from_dict(self.train_defaults).cleaning()
        return self

    def cleaning(self) -> CleaningSettings:
        """How the service cleans what it classifies and stores (see train_defaults)."""
        return self._cleaning

    @model_validator(mode="after")
    def _window_holds_minimum(self) -> Settings:
        if self.drift_min_predictions > self.drift_window:
            raise ValueError(
                f"drift_min_predictions ({self.drift_min_predictions}) is larger than "
                f"drift_window ({self.drift_window})"
            )
        return self

    @model_validator(mode="after")
    def _one_gate_per_head(self) -> Settings:
        both = sorted(set(self.confidence_thresholds) & set(self.target_precision))
        if both:
            raise ValueError(
                f"head(s) {', '.join(both)} have both a confidence threshold and a target "
                "precision; set one of them"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only the values given: from_env composes the environment and the file itself."""
        return (init_settings,)

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        env_file: Path | None = None,
        **overrides: Any,
    ) -> Settings:
        """Settings from `env_file`, then `TICKETSERVE_<FIELD>` variables of `env` (default
        the process environment), then `overrides` (None = not given)."""
        if env_file is not None and not env_file.is_file():
            raise SettingsError(f"environment file {env_file} does not exist")
        origins: dict[str, str] = {}
        values: dict[str, Any] = {}
        sources = [(_EnvFile(cls, env_file), str(env_file))] if env_file is not None else []
        sources.append((_Environment(cls, os.environ if env is None else env), "environment"))
        for source, origin in sources:
            try:
                found = source()
            except pydantic_settings.SettingsError as exc:  # a list or mapping that does not parse
                raise SettingsError(str(exc.__cause__ or exc)) from None
            values.update(found)
            origins.update(dict.fromkeys(found, origin))
        given = {k: v for k, v in overrides.items() if v is not None}
        values.update(given)
        try:
            return cls(**values)
        except ValidationError as exc:
            problems = "; ".join(
                _problem(err, {**origins, **dict.fromkeys(given, "flag")}) for err in exc.errors()
            )
            raise SettingsError(f"invalid settings: {problems}") from None

    def resolved_api_key(self) -> str | None:
        """The key from `api_key`, else from `api_key_file` (first line, stripped)."""
        return _secret(self.api_key, self.api_key_file, "api_key_file")

    def zammad_secrets(self) -> tuple[str, str] | None:
        """(API token, webhook secret) when Zammad is configured and on; a missing one is a
        SettingsError naming it."""
        if self.zammad_url is None or self.zammad_mode == "off":
            return None
        token, secret = self._desk_secrets("Zammad", "zammad", ("token", "webhook_secret"))
        return token, secret

    def znuny_secrets(self) -> tuple[str, str, str] | None:
        """(user, password, webhook secret) when Znuny is configured and on; a missing one is a
        SettingsError naming it."""
        if self.znuny_url is None or self.znuny_mode == "off":
            return None
        if self.znuny_user is None:
            raise SettingsError(
                f"Znuny is on ({ENV_PREFIX}ZNUNY_URL) but {ENV_PREFIX}ZNUNY_USER is not set"
            )
        password, secret = self._desk_secrets("Znuny", "znuny", ("password", "webhook_secret"))
        return self.znuny_user, password, secret

    def _desk_secrets(self, desk: str, prefix: str, names: tuple[str, ...]) -> list[str]:
        """The secrets `<prefix>_<name>` (or `<prefix>_<name>_file`) of a help desk that is on;
        a SettingsError names every one that is missing."""
        values = [
            _secret(
                getattr(self, f"{prefix}_{name}"),
                getattr(self, f"{prefix}_{name}_file"),
                f"{prefix}_{name}_file",
            )
            for name in names
        ]
        missing = [name for name, value in zip(names, values, strict=True) if not value]
        if missing:
            raise SettingsError(
                f"{desk} is on ({ENV_PREFIX}{prefix.upper()}_URL) but "
                + " and ".join(f"{ENV_PREFIX}{prefix.upper()}_{n.upper()} (or _FILE)"
                               for n in missing)
                + " is not set"
            )  # fmt: skip
        return [value for value in values if value]

    def rt_token_value(self) -> str | None:
        """The RT token when RT is configured and on; a missing one is a SettingsError."""
        if self.rt_url is None or self.rt_mode == "off":
            return None
        [token] = self._desk_secrets("RT", "rt", ("token",))
        return token

    def check_exposure(self) -> None:
        """Refuse a non-loopback address without an API key."""
        if not is_loopback(self.host) and not self.resolved_api_key():
            raise SettingsError(
                f"refusing to listen on {self.host} without an API key: set "
                f"{ENV_PREFIX}API_KEY or --api-key-file, or listen on 127.0.0.1"
            )


def _secret(value: str | SecretStr | None, file: Path | None, file_setting: str) -> str | None:
    """A secret given directly, else read from `file` (its first line, stripped)."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if value:
        return value
    if file is None:
        return None
    try:
        secret = file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SettingsError(f"cannot read {file_setting} {file}: {exc.strerror}") from exc
    if not secret:
        raise SettingsError(f"{file_setting} {file} is empty")
    return secret


def is_loopback(host: str) -> bool:
    """Whether `host` is a loopback address (or `localhost`)."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _problem(error: Any, origins: dict[str, str]) -> str:
    """One validation error, naming the variable (or flag) the bad value came from."""
    if not error["loc"]:  # a rule between settings: its message names them
        return str(error["ctx"]["error"]) if error["type"] == "value_error" else error["msg"]
    name = str(error["loc"][0])
    if error["type"] == "extra_forbidden":  # only an environment file's line can be one
        return f"{name.upper()} names no setting"
    origin = origins.get(name, "")
    where = name if origin == "flag" else f"{ENV_PREFIX}{name.upper()} ({name})"
    if origin not in ("flag", "environment", ""):
        where += f" in {origin}"
    reason = str(error["ctx"]["error"]) if error["type"] == "value_error" else error["msg"]
    return f"{where}: {reason}"


class _ServiceSyntax:
    """Lists as JSON or `a,b`, mappings as JSON or `key=value,key=value` (see `_parse_env`)."""

    def prepare_field_value(
        self, field_name: str, field: FieldInfo, value: Any, value_is_complex: bool
    ) -> Any:
        return None if value is None else _parse_env(field_name, value)


class _Environment(_ServiceSyntax, EnvSettingsSource):
    """`TICKETSERVE_*` variables of a mapping."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        self._env = env
        super().__init__(settings_cls, env_ignore_empty=True)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # Names compare without regard to case (as EnvSettingsSource's own default); an empty
        # value is "not set".
        return {name.lower(): value for name, value in self._env.items() if value != ""}


class _EnvFile(_ServiceSyntax, DotEnvSettingsSource):
    """An environment file's `TICKETSERVE_*=value` lines (comments and blanks allowed); a line
    naming no setting is an error, so a misspelt name is not silently ignored."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        super().__init__(settings_cls, env_file=path, env_ignore_empty=True)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # Other lines are for other programs (the file is systemd's EnvironmentFile too).
        prefix, other = ENV_PREFIX.lower(), CACHE_ENV.lower()
        return {
            name: value
            for name, value in super()._load_env_vars().items()
            if name.startswith(prefix) and name != other
        }


def _parse_env(name: str, raw: str) -> Any:
    """List settings accept JSON or `a,b`; mapping settings JSON or `key=value,key=value`;
    scalars are left to pydantic."""
    field = Settings.model_fields[name]
    if "list" in str(field.annotation):
        text = raw.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except json.JSONDecodeError as exc:
                raise SettingsError(f"{ENV_PREFIX}{name.upper()}: invalid JSON: {exc.msg}") from exc
        return [part.strip() for part in text.split(",") if part.strip()]
    if not (field.annotation is not None and "dict" in str(field.annotation)):
        return raw
    text = raw.strip()
    if text.startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise SettingsError(f"{ENV_PREFIX}{name.upper()}: invalid JSON: {exc.msg}") from exc
    pairs: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise SettingsError(f"{ENV_PREFIX}{name.upper()}: expected key=value, got {item!r}")
        pairs[key.strip()] = _scalar(value.strip())
    return pairs


def _scalar(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
