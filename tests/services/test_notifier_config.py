"""The notifier's configuration, address checks, Message-IDs, texts and operator commands:
everything that needs neither Redis nor an SMTP server."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from bus import ConfigurationError
from bus.store import Store
from schemas.common import Identifier
from schemas.dpmptsp import PermitRejected
from services.notifier import InvalidAddress, Notifier, SmtpSettings, create
from services.notifier.__main__ import main
from services.notifier.mail import check_email, message_id
from services.notifier.texts import permit_rejected, rupiah, tanggal

ACCOUNT = "0b7e4d12-95c3-4f7a-b1d8-7c6a3e2f9d40"
BASE = {"SIMPUL_SMTP_HOST": "smtp.malangkota.go.id", "SIMPUL_SMTP_FROM": "noreply@malangkota.go.id"}


def test_no_host_means_email_disabled() -> None:
    settings = SmtpSettings.from_env({})
    assert not settings.enabled


def test_a_full_configuration_is_read() -> None:
    settings = SmtpSettings.from_env(
        {
            **BASE,
            "SIMPUL_SMTP_PORT": "587",
            "SIMPUL_SMTP_USER": "notifier",
            "SIMPUL_SMTP_PASSWORD": "hunter2-but-longer",
            "SIMPUL_SMTP_STARTTLS": "true",
            "SIMPUL_SMTP_FROM": "Pemerintah Kota Malang <noreply@malangkota.go.id>",
        }
    )
    assert settings.enabled and settings.port == 587 and settings.starttls is True
    assert (settings.timeout_s, settings.send_timeout_s) == (10.0, 30.0)  # defaults
    assert settings.sender_address == "noreply@malangkota.go.id"
    assert "hunter2" not in repr(settings)


@pytest.mark.parametrize(
    ("extra", "named", "says"),
    [
        ({"SIMPUL_SMTP_FROM": ""}, "SIMPUL_SMTP_FROM", "required"),
        ({"SIMPUL_SMTP_FROM": "not an address"}, "SIMPUL_SMTP_FROM", "local-part@domain"),
        ({"SIMPUL_SMTP_PORT": "smtp"}, "SIMPUL_SMTP_PORT", "integer"),
        ({"SIMPUL_SMTP_PORT": "70000"}, "SIMPUL_SMTP_PORT", "65535"),
        ({"SIMPUL_SMTP_STARTTLS": "maybe"}, "SIMPUL_SMTP_STARTTLS", "true or false"),
        ({"SIMPUL_SMTP_USER": "notifier"}, "SIMPUL_SMTP_PASSWORD", "together"),
        (
            {"SIMPUL_SMTP_USER": "u", "SIMPUL_SMTP_PASSWORD": "p", "SIMPUL_SMTP_STARTTLS": "no"},
            "SIMPUL_SMTP_STARTTLS",
            "unencrypted",
        ),
        ({"SIMPUL_SMTP_TLS": "1", "SIMPUL_SMTP_STARTTLS": "1"}, "SIMPUL_SMTP_TLS", "exclude"),
        ({"SIMPUL_SMTP_TIMEOUT_S": "0"}, "SIMPUL_SMTP_TIMEOUT_S", "greater than 0"),
        ({"SIMPUL_SMTP_SEND_TIMEOUT_S": "301"}, "SIMPUL_SMTP_SEND_TIMEOUT_S", "300"),
    ],
)
def test_bad_settings_are_named(extra: dict[str, str], named: str, says: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        SmtpSettings.from_env({**BASE, **extra})
    assert named in str(caught.value) and says in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_credentials_in_clear_are_allowed_to_a_relay_on_loopback() -> None:
    settings = SmtpSettings.from_env(
        {
            **BASE,
            "SIMPUL_SMTP_HOST": "127.0.0.1",
            "SIMPUL_SMTP_USER": "u",
            "SIMPUL_SMTP_PASSWORD": "p",
            "SIMPUL_SMTP_STARTTLS": "false",
        }
    )
    assert settings.starttls is False and settings.user == "u"


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("warga@example.co.id", "warga@example.co.id"),
        ("  Warga.Satu+izin@Example.CO.ID ", "Warga.Satu+izin@example.co.id"),
    ],
)
def test_good_addresses(given: str, kept: str) -> None:
    assert check_email(given) == kept


@pytest.mark.parametrize(
    "bad",
    [
        "warga",
        "warga@localhost",
        "@example.co.id",
        "warga@",
        "warga..satu@example.co.id",
        "warga satu@example.co.id",
        "Warga <warga@example.co.id>",
        "warga@example.co.id\r\nBcc: mata-mata@example.com",
        "warga@[10.0.0.1]",
        "warga@10.0.0.1",
        "wárga@example.co.id",
        "warga@-example.co.id",
        "w" * 65 + "@example.co.id",
    ],
)
def test_bad_addresses_are_refused_without_quoting_them(bad: str) -> None:
    with pytest.raises(InvalidAddress) as caught:
        check_email(bad)
    assert bad.strip() not in str(caught.value)


async def test_set_contact_checks_account_and_address(tmp_path: Path) -> None:
    notifier = Notifier(Store(f"sqlite:///{tmp_path / 'n.db'}"), smtp=SmtpSettings(), token=None)
    await notifier.open()
    try:
        with pytest.raises(ValueError, match="UUID"):
            await notifier.set_contact("42", "warga@example.co.id")
        with pytest.raises(InvalidAddress):
            await notifier.set_contact(ACCOUNT, "warga@example.co.id\nBcc: x@example.com")
        await notifier.set_contact(ACCOUNT.upper(), "warga@example.co.id")
        await notifier.set_contact(ACCOUNT, "warga.baru@example.co.id")  # replaces
        rows = await notifier.store.run(lambda tx: tx.all("SELECT * FROM notifier_contact"))
        assert [(r["account_id"], r["email"]) for r in rows] == [
            (ACCOUNT, "warga.baru@example.co.id")
        ]
        with pytest.raises(ValueError, match="UUID"):
            await notifier.inbox("nope")
    finally:
        await notifier.store.close()


def test_message_ids_are_stable_and_do_not_show_the_account() -> None:
    first = message_id("c0ffee00-0000-5000-8000-000000000001", ACCOUNT)
    assert first == message_id("c0ffee00-0000-5000-8000-000000000001", ACCOUNT)
    assert first.startswith("<c0ffee00-0000-5000-8000-000000000001.")
    assert first.endswith("@notifier.simpul.malangkota.go.id>")
    assert ACCOUNT not in first
    assert first != message_id("c0ffee00-0000-5000-8000-000000000001", str(ACCOUNT[::-1]))
    odd = message_id("an id with <spaces> and @", ACCOUNT)  # any text is a valid event id
    assert " " not in odd and odd.count("@") == 1 and odd.count("<") == 1


def test_a_short_token_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="at least 16"):
        Notifier(Store(f"sqlite:///{tmp_path / 'n.db'}"), smtp=SmtpSettings(), token="short")


def test_the_maximum_age_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'n.db'}")
    monkeypatch.delenv("SIMPUL_NOTIFIER_MAX_AGE_DAYS", raising=False)
    assert Notifier(store, smtp=SmtpSettings()).max_age == timedelta(days=7)
    monkeypatch.setenv("SIMPUL_NOTIFIER_MAX_AGE_DAYS", "0")
    assert not Notifier(store, smtp=SmtpSettings()).max_age
    monkeypatch.setenv("SIMPUL_NOTIFIER_MAX_AGE_DAYS", "a week")
    with pytest.raises(ConfigurationError, match="SIMPUL_NOTIFIER_MAX_AGE_DAYS"):
        Notifier(store, smtp=SmtpSettings())


def test_texts_in_indonesian() -> None:
    assert tanggal(date(2026, 5, 1)) == "1 Mei 2026"
    assert rupiah(1_250_000) == "Rp1.250.000" and rupiah(500) == "Rp500"
    applicant = Identifier(scheme="nik", value="3573025203900002")
    rejection = PermitRejected(
        application_no="REK/2026/11/000007",
        kind="reklame",
        applicant=applicant,
        reason="zoning-mismatch",
        rejected_on=date(2026, 11, 13),
    )
    notice = permit_rejected(rejection)
    assert notice.kind == "permit-rejected"
    assert "REK/2026/11/000007" in notice.body and "rencana tata ruang" in notice.body
    assert "3573025203900002" not in notice.body


def test_create_builds_the_service_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SIMPUL_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("SIMPUL_SMTP_HOST", raising=False)
    monkeypatch.setenv("SIMPUL_NOTIFIER_TOKEN", "a-token-of-enough-length")
    service = create()
    assert service.name == "notifier" and service.source == "urn:malangkota:diskominfo:notifier"
    assert set(service.handlers) == {
        "identity.account.linked.v1",
        "identity.account.unlinked.v1",
        "dukcapil.citizen.died.v1",
        "dpmptsp.permit.issued.v1",
        "dpmptsp.permit.rejected.v1",
        "bapenda.payment.received.v1",
    }
    assert service.http_app is not None
    monkeypatch.setenv("SIMPUL_SMTP_HOST", "smtp.malangkota.go.id")  # but no FROM
    with pytest.raises(ConfigurationError, match="SIMPUL_SMTP_FROM"):
        create()


def test_the_operator_commands(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SIMPUL_NOTIFIER_DB", f"sqlite:///{tmp_path / 'n.db'}")
    monkeypatch.delenv("SIMPUL_SMTP_HOST", raising=False)
    assert main(["pending"]) == 0
    assert main(["send-pending", "no-such-event"]) == 0
    assert "sent 0" in capsys.readouterr().out
    monkeypatch.setenv("SIMPUL_SMTP_HOST", "smtp.malangkota.go.id")
    assert main(["pending"]) == 2
    assert "SIMPUL_SMTP_FROM" in capsys.readouterr().err
