"""Settings come from SIMPUL_* variables and bad values get clear errors."""

from __future__ import annotations

import pytest

from bus.errors import ConfigurationError
from bus.settings import Settings


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
    with pytest.raises(ConfigurationError, match="retry_backoff_max_ms must be < claim_idle_ms"):
        Settings.load(retry_backoff_max_ms=5_000, claim_idle_ms=5_000)


def test_unknown_setting_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match="SIMPUL_MAX_DELIVERY"):
        Settings.load(max_delivery=3)


def test_retry_delay_doubles_per_delivery_up_to_the_cap_less_up_to_a_tenth() -> None:
    settings = Settings.load(retry_backoff_ms=1_000, retry_backoff_max_ms=5_000)
    for delivery, full in [(1, 1_000), (2, 2_000), (3, 4_000), (4, 5_000), (9, 5_000)]:
        delays = {settings.retry_delay_ms(delivery) for _ in range(50)}
        assert all(0.9 * full <= d <= full for d in delays), (delivery, sorted(delays))
