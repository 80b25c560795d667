"""Settings come from SIMPUL_* variables and bad values get clear errors."""

from __future__ import annotations

import pytest
from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from bus.errors import ConfigurationError
from bus.settings import ComponentSettings, Settings


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMPUL_MAX_DELIVERIES", "9")
    monkeypatch.setenv("SIMPUL_REDIS_URL", "redis://127.0.0.1:1/2")
    settings = Settings.load()
    assert settings.max_deliveries == 9
    assert settings.redis_url == "redis://127.0.0.1:1/2"


def test_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMPUL_BATCH_SIZE", "lots")
    with pytest.raises(
        ConfigurationError, match="SIMPUL_BATCH_SIZE: Input should be a valid integer"
    ):
        Settings.load()


def test_bad_url_does_not_echo_credentials() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.load(redis_url="http://user:s3cret@host:6379")
    assert "SIMPUL_REDIS_URL" in str(caught.value) and "s3cret" not in str(caught.value)


def test_retry_backoff_must_stay_below_claim_idle() -> None:
    with pytest.raises(
        ConfigurationError,
        match=r"SIMPUL_RETRY_BACKOFF_MAX_MS \(5000\) must be below SIMPUL_CLAIM_IDLE_MS \(5000\)",
    ):
        Settings.load(retry_backoff_max_ms=5_000, claim_idle_ms=5_000)


def test_a_bad_combination_of_variables_names_both(monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/delivery.md: a bad value stops the service with a message naming the variable; a
    check across two variables names both, with their values."""
    monkeypatch.setenv("SIMPUL_RETRY_BACKOFF_MAX_MS", "200000")
    with pytest.raises(ConfigurationError) as caught:
        Settings.load()
    message = str(caught.value)
    assert "SIMPUL_RETRY_BACKOFF_MAX_MS (200000)" in message
    assert "SIMPUL_CLAIM_IDLE_MS (120000)" in message
    monkeypatch.setenv("SIMPUL_RETRY_BACKOFF_MAX_MS", "500")
    with pytest.raises(ConfigurationError, match=r"SIMPUL_RETRY_BACKOFF_MS \(1000\)"):
        Settings.load()
    monkeypatch.delenv("SIMPUL_RETRY_BACKOFF_MAX_MS")
    monkeypatch.setenv("SIMPUL_SIGNER", "adapter-x-2026")
    monkeypatch.delenv("SIMPUL_SIGNING_KEY_FILE", raising=False)
    with pytest.raises(ConfigurationError, match="SIMPUL_SIGNING_KEY_FILE is not"):
        Settings.load()


def test_unknown_setting_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match="SIMPUL_MAX_DELIVERY"):
        Settings.load(max_delivery=3)


def test_retry_delay_doubles_per_delivery_up_to_the_cap_less_up_to_a_tenth() -> None:
    settings = Settings.load(retry_backoff_ms=1_000, retry_backoff_max_ms=5_000)
    for delivery, full in [(1, 1_000), (2, 2_000), (3, 4_000), (4, 5_000), (9, 5_000)]:
        delays = {settings.retry_delay_ms(delivery) for _ in range(50)}
        assert all(0.9 * full <= d <= full for d in delays), (delivery, sorted(delays))


# -- ComponentSettings: the base of each service's and adapter's own settings -----------------


class _Registry(ComponentSettings):
    model_config = SettingsConfigDict(env_prefix="SIMPUL_TESTREG_")

    db: str | None = None
    poll: bool = False
    size: int = Field(default=5, ge=1)
    key: SecretStr | None = Field(default=None, validation_alias="SIMPUL_TESTREG_SHARED_KEY")


def test_component_settings_read_their_prefix_and_aliases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMPUL_TESTREG_DB", "mysql://registry")
    monkeypatch.setenv("SIMPUL_TESTREG_POLL", "yes")
    monkeypatch.setenv("SIMPUL_TESTREG_SHARED_KEY", "k" * 20)
    monkeypatch.setenv("SIMPUL_TESTREG_SIZE", "")  # empty: unset, the default holds
    loaded = _Registry.load()
    assert (loaded.db, loaded.poll, loaded.size) == ("mysql://registry", True, 5)
    assert loaded.key is not None and loaded.key.get_secret_value() == "k" * 20
    assert _Registry.load(size=9).size == 9  # explicit values win


def test_component_settings_name_the_variable_never_the_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SIMPUL_TESTREG_POLL", "s3cr3t-maybe")
    monkeypatch.setenv("SIMPUL_TESTREG_SIZE", "0")
    with pytest.raises(ConfigurationError) as raised:
        _Registry.load()
    message = str(raised.value)
    assert "SIMPUL_TESTREG_POLL: Input should be a valid boolean" in message
    assert "SIMPUL_TESTREG_SIZE: Input should be greater than or equal to 1" in message
    assert "s3cr3t" not in message
    assert _Registry.variable("key") == "SIMPUL_TESTREG_SHARED_KEY"


def test_component_settings_read_a_given_environment_instead_of_the_process_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SIMPUL_TESTREG_DB", "mysql://from-the-process")
    given = {"SIMPUL_TESTREG_SIZE": "7", "SIMPUL_TESTREG_SHARED_KEY": "k" * 20}
    loaded = _Registry.load(given)
    assert (loaded.db, loaded.size) == (None, 7)  # the process's variable is not read
    assert loaded.key is not None and loaded.key.get_secret_value() == "k" * 20
    assert _Registry.load().db == "mysql://from-the-process"  # and is read again without one


class _Aliased(ComponentSettings):
    model_config = SettingsConfigDict(env_prefix="SIMPUL_TESTREG_")

    limit: int = Field(default=1, validation_alias="SIMPUL_OTHER_LIMIT")


def test_a_bad_aliased_value_names_the_alias_itself() -> None:
    with pytest.raises(ConfigurationError) as raised:
        _Aliased.load({"SIMPUL_OTHER_LIMIT": "many"})
    assert str(raised.value).startswith("invalid settings: SIMPUL_OTHER_LIMIT: ")
