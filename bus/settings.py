"""Runtime settings, read from ``SIMPUL_*`` environment variables (or passed explicitly)."""

from __future__ import annotations

import os
import random
import socket
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any, Literal, Self

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.sources.utils import parse_env_vars

from bus.errors import ConfigurationError


def _default_consumer() -> str:
    # Stable across restarts only if SIMPUL_CONSUMER is set (e.g. to a StatefulSet pod name);
    # the pid keeps replicas on one host apart.
    return f"{socket.gethostname()}-{os.getpid()}"


class Settings(BaseSettings):
    """Every knob of the runtime. Durations are in milliseconds unless the name says otherwise."""

    model_config = SettingsConfigDict(env_prefix="SIMPUL_", extra="forbid", frozen=True)

    redis_url: str | None = Field(
        default=None,
        description="redis:// or rediss:// URL; unset means: start a private embedded Redis",
    )
    redis_cluster: bool = Field(
        default=False,
        description="the URL names one master of a Redis Cluster: clients discover the others "
        "and route each key to its slot's master (read by bus.connection.connect)",
    )
    # TLS to Redis (rediss:// only; read by bus.connection.connect, which checks the files).
    redis_tls_ca: str | None = Field(
        default=None,
        description="PEM file of the CA certificate(s) that signed the Redis server's "
        "certificate; unset: the system's CAs",
    )
    redis_tls_cert: str | None = Field(
        default=None,
        description="PEM file of this principal's client certificate, for a Redis that demands "
        "one (mutual TLS); with SIMPUL_REDIS_TLS_KEY unless the file holds the key too",
    )
    redis_tls_key: str | None = Field(
        default=None,
        description="PEM file of the unencrypted private key of SIMPUL_REDIS_TLS_CERT",
    )

    # Sentinel (read by bus.connection.connect, which follows the master they name).
    redis_sentinels: str | None = Field(
        default=None,
        description="comma-separated HOST:PORT of the Sentinels: clients ask them for the "
        "current master of SIMPUL_REDIS_SENTINEL_MASTER and follow it through failovers; the "
        "URL then gives only the scheme, credentials and database (its host is not used)",
    )
    redis_sentinel_master: str = Field(
        default="simpul", min_length=1, description="the master's name in the Sentinels' config"
    )
    redis_sentinel_username: str | None = Field(
        default=None, description="ACL user of the Sentinels (their own, not the data's)"
    )
    redis_sentinel_password: str | None = Field(
        default=None, description="password of the Sentinels (sentinel requirepass or ACL)"
    )
    # Durable acknowledgement (read by bus.durability.Durability.from_env).
    redis_wait_replicas: int | None = Field(
        default=None,
        ge=0,
        le=16,
        description="a publish, dead-letter move or checkpoint save returns only once this "
        "many replicas have it (WAIT); unset: 1 if the master has replicas, else 0",
    )
    redis_wait_timeout_ms: int = Field(
        default=2_000,
        ge=1,
        le=60_000,
        description="how long WAIT waits for the replicas before the publish fails as "
        "NotDurable (retryable)",
    )

    @field_validator("redis_cluster", "inboxes", mode="before")
    @classmethod
    def _empty_is_false(cls, value: object) -> object:
        return False if value == "" else value

    @field_validator("redis_wait_replicas", mode="before")
    @classmethod
    def _empty_is_auto(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator(
        "redis_tls_ca",
        "redis_tls_cert",
        "redis_tls_key",
        "redis_sentinels",
        "redis_sentinel_username",
        "redis_sentinel_password",
    )
    @classmethod
    def _empty_is_unset(cls, value: str | None) -> str | None:
        return value or None

    inboxes: bool = Field(
        default=False,
        description="routed delivery (docs/decisions/0011): a service reads its group's "
        "inboxes simpul:inbox:{<group>/<stream>}, written by the router; false: it reads the "
        "department streams themselves (a bus without a router)",
    )
    intake: str | None = Field(
        default=None,
        description="routed delivery: the principal whose intake simpul:intake:{<principal>} "
        "this process publishes to (read by bus.publisher.Publisher); unset: publish to the "
        "department streams",
    )

    data_dir: str = Field(default=".simpul", description="where the embedded Redis keeps its AOF")
    consumer: str = Field(default_factory=_default_consumer, min_length=1)

    batch_size: int = Field(default=100, ge=1, le=10_000, description="entries per XREADGROUP")
    block_ms: int = Field(default=2_000, ge=1, le=60_000, description="XREADGROUP BLOCK")
    max_deliveries: int = Field(default=5, ge=1, le=1_000)
    retry_backoff_ms: int = Field(default=1_000, ge=1, description="first retry delay")
    retry_backoff_max_ms: int = Field(default=60_000, ge=1, description="cap of the retry delay")
    claim_idle_ms: int = Field(
        default=120_000,
        ge=10,
        description="a pending entry idle this long is presumed abandoned by a dead consumer "
        "and is claimed by a live one; must exceed the slowest handler",
    )
    reclaim_interval_ms: int = Field(default=500, ge=10, description="how often to sweep pending")
    dedupe_ttl_ms: int = Field(
        default=7 * 24 * 3600 * 1000, ge=1_000, description="how long event ids are remembered"
    )
    shutdown_grace_s: float = Field(default=30.0, ge=0)
    http: str | None = Field(
        default=None,
        description="HOST:PORT a service serves its HTTP API on (if it has one); unset: none",
    )
    signing_key_file: str | None = Field(
        default=None,
        description="this producer's Ed25519 private key file (`simpul keys generate`); set: "
        "every event it publishes is signed; unset: not signed",
    )
    signer: str | None = Field(
        default=None,
        description="key id of signing_key_file; unset: the file's name without .key",
    )
    keyring_file: str | None = Field(
        default=None,
        description="YAML file of the producers' public keys: the topology (deploy/topology.yaml) "
        "or a signing_keys list; set: a service verifies every event before its handler runs",
    )
    signatures: Literal["on", "off"] = Field(
        default="on",
        description="on: a service without a keyring refuses to start; off: it runs without "
        "verifying anything and says so loudly at every start (development only)",
    )
    require_signatures: bool = Field(
        default=True,
        description="with a keyring: dead-letter unsigned events (false only while producers "
        "migrate; bad signatures are rejected either way)",
    )
    signature_max_age_s: int = Field(
        default=7 * 24 * 3600,
        ge=1,
        description="with a keyring: an event arriving in its stream longer than this after it "
        "was signed is stale (a replay)",
    )
    signature_max_skew_s: int = Field(
        default=300, ge=0, description="with a keyring: how far a producer's clock may be ahead"
    )
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_tracebacks: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="log a failed handler's traceback (masked) with handler_failed; "
        "auto: when logs are for a person (console format, or auto on a terminal)",
    )

    @field_validator("redis_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            scheme = value.split(":", 1)[0]  # never echo the rest: it may hold a password
            raise ValueError(
                f"must start with redis://, rediss:// or unix:// (got {scheme!r}://...)"
            )
        return value

    def retry_delay_ms(self, delivery: int) -> int:
        """The pause after failed delivery ``delivery`` (1 for the first): ``retry_backoff_ms``
        doubled per delivery, capped at ``retry_backoff_max_ms``, less up to 10 % of jitter so
        that replicas which failed together do not retry together. The one backoff formula of
        retries (the consumer's, the audit backfill's)."""
        base = self.retry_backoff_ms * 2 ** (delivery - 1)
        capped = min(base, self.retry_backoff_max_ms)
        return int(capped * random.uniform(0.9, 1.0))

    @model_validator(mode="after")
    def _check_backoff(self) -> Settings:
        # A cross-field check has no single variable to blame: name both (docs/delivery.md
        # promises that a bad value's message names the variable).
        if self.retry_backoff_max_ms < self.retry_backoff_ms:
            raise ValueError(
                f"SIMPUL_RETRY_BACKOFF_MAX_MS ({self.retry_backoff_max_ms}) must be >= "
                f"SIMPUL_RETRY_BACKOFF_MS ({self.retry_backoff_ms}): the cap of the delays "
                "cannot be below the first"
            )
        if self.retry_backoff_max_ms >= self.claim_idle_ms:
            raise ValueError(
                f"SIMPUL_RETRY_BACKOFF_MAX_MS ({self.retry_backoff_max_ms}) must be below "
                f"SIMPUL_CLAIM_IDLE_MS ({self.claim_idle_ms}): retries are scheduled by ageing "
                "the pending entry towards the claim"
            )
        return self

    @model_validator(mode="after")
    def _check_signer(self) -> Settings:
        if self.signer and not self.signing_key_file:
            raise ValueError(
                "SIMPUL_SIGNER is set but SIMPUL_SIGNING_KEY_FILE is not: which key signs?"
            )
        return self

    @classmethod
    def load(cls, **overrides: object) -> Settings:
        """Read the environment, apply overrides; validation errors become one clear error."""
        try:
            return cls(**overrides)  # type: ignore[arg-type]
        except ValidationError as exc:
            problems = "; ".join(f"{_variable(err['loc'])}: {err['msg']}" for err in exc.errors())
            raise ConfigurationError(f"invalid Simpul settings: {problems}") from exc


def _variable(loc: tuple[int | str, ...]) -> str:
    name = "_".join(str(part) for part in loc).upper()
    return f"SIMPUL_{name}" if name else "settings"


# The environment a ComponentSettings.load(environ=...) reads instead of os.environ.
_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("simpul_environ", default=None)


class _MappingSource(EnvSettingsSource):
    """The environment source, reading a given mapping instead of ``os.environ``."""

    def __init__(
        self, settings_cls: type[BaseSettings], environ: Mapping[str, str], env_prefix: str | None
    ) -> None:
        self._environ = environ
        super().__init__(settings_cls, env_prefix=env_prefix)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


class ComponentSettings(BaseSettings):
    """Base of a component's own settings (a service's, an adapter's, a core module's), beside
    the core's :class:`Settings`: one subclass per component, fields read from
    ``SIMPUL_<COMPONENT>_*`` (its ``env_prefix``) or the variable a field's ``validation_alias``
    names; an empty variable counts as unset. :meth:`load` reports a bad value as one error
    naming the variable (never quoting the value: it may be a token). Code reads its settings
    through such a class, not from ``os.environ`` (looked up directly: only PATH, and the
    password variables a topology names, whose names are data).

        class DisnakerSettings(ComponentSettings):
            model_config = SettingsConfigDict(env_prefix="SIMPUL_DISNAKER_")
            db: str | None = None
            poll: bool = False
    """

    model_config = SettingsConfigDict(
        extra="ignore", frozen=True, env_ignore_empty=True, populate_by_name=True
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        environ = _ENVIRON.get()
        if environ is None:
            return init_settings, env_settings, dotenv_settings, file_secret_settings
        prefix = getattr(env_settings, "env_prefix", None)  # load(_env_prefix=...) included
        return init_settings, _MappingSource(settings_cls, environ, prefix)

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Self:
        """The settings from ``environ`` (default: the process's environment) and
        ``overrides`` (by field name; they win)."""
        token = _ENVIRON.set(environ)
        try:
            return cls(**overrides)
        except ValidationError as exc:
            problems = "; ".join(
                (f"{cls.variable(str(err['loc'][0]))}: " if err["loc"] else "")
                + str(err["msg"]).removeprefix("Value error, ")
                for err in exc.errors()
            )
            raise ConfigurationError(f"invalid settings: {problems}") from None
        finally:
            _ENVIRON.reset(token)

    @classmethod
    def variable(cls, field: str) -> str:
        """The environment variable of ``field`` (a field's name, or its alias as errors give
        it)."""
        if any(info.validation_alias == field for info in cls.model_fields.values()):
            return field
        info = cls.model_fields.get(field)
        alias = info.validation_alias if info is not None else None
        if isinstance(alias, str):
            return alias
        return f"{cls.model_config.get('env_prefix', '')}{field}".upper() if field else "settings"
