"""Development material that is public (in git): refused unless development mode is set.

A real deployment must never trust these: anyone can sign with the private keys of
``deploy/keys`` (and the worked example of docs/wire-format.md, section 10.5), and anyone can
read the passwords and tokens of ``deploy/dev.env``. Services, adapters, the router and every
Redis connection refuse them unless ``SIMPUL_DEV_MODE=1`` says this is a development run (the
demo, compose's development deployment and the tests set it); ``simpul keys show`` and
``simpul acl check`` flag them. tests/bus/test_devmaterial.py checks these lists are exactly
what deploy/ holds, so they cannot drift. Only public keys and SHA-256 digests are listed.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable

from pydantic import Field

from bus.errors import ConfigurationError
from bus.settings import ComponentSettings

__all__ = [
    "DEV_MODE_VARIABLE",
    "DEV_PUBLIC_KEYS",
    "DEV_SECRET_DIGESTS",
    "dev_mode",
    "is_dev_key",
    "is_dev_secret",
    "refuse_dev_keys",
    "refuse_dev_secret",
]

DEV_MODE_VARIABLE = "SIMPUL_DEV_MODE"

# key id -> base64 of the raw 32-byte Ed25519 public key
DEV_PUBLIC_KEYS: dict[str, str] = {
    "adapter-bapenda-dev-2026": "qcqP2VBynsN+iMLgXD0Y8aZE+sn59KSh0v2UyF2M/Xc=",
    "adapter-disnaker-dev-2026": "Er19scFRb8E7UfR/4Ara3TBcSYVkHP1OPq5Ri2gGBVA=",
    "adapter-dpmptsp-dev-2026": "HsIyo/ZsnzjqrBrL1FR3vpQvmIJZqJRLwGNdTGmHPYA=",
    "adapter-dukcapil-dev-2026": "fkITnr0i6y/yRQ+mpcKYzGdgBkQvpvzpU71LCbT6O70=",
    "adapter-identitas-dev-2026": "mxcxSu/jvMV65G6TE3TRTkLxXLPe16o12pX5kiDFMXg=",
    "router-dev-2026": "n8CfJZcBWibYUt9NtlVlCQq/1HTPUwTQhIXc/2hqiUU=",
    "svc-bapenda-dev-2026": "ZiPqluQbWtGuKswqASzM7L0ixgNdFfi+ZIB0vOXlyx8=",
    "svc-dinkes-dev-2026": "mHr+rceyIcq4xNEo9S8l90cCuEDkGfCgQmAWXkjtMXM=",
    "svc-dinsos-dev-2026": "L4WdRFD9T3F2RJqJVw9s/v2x0UQxOQJY0nJn4RyP1bs=",
    "(docs/wire-format.md 10.5 example)": "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=",
}

# SHA-256 (hex) of every value of deploy/dev.env: Redis passwords, database passwords, tokens,
# and of each token of SIMPUL_PROFILE_TOKENS (role=token,...), which the profile API takes apart
DEV_SECRET_DIGESTS: frozenset[str] = frozenset(
    {
        "006fb9ee6f06db5aaf8c5080686fbe02714da5da1dedc53850ae9c770c95e132",
        "0ae968521b36e049daf5a9b1bc17fe314ec6132161eae9752b931b43269e0be1",
        "0e672be7982d0963eabc318f97b96874cc512c45d98a5367a9f3183c9e5120fb",
        "0f73f77878aa585b470c7f6d2ee5dc6ef9c753bfb1d1f53dce473c25976500db",
        "141ea1a46a95ce7a99974f48c8eb49cab4ff38d22d9c6cdd4e0a27d25ce0b571",
        "14514c91e2ffcacbeeef539f86301eb211ce50b403ec192c3a54e79d895074e5",
        "216e26fe8c5d371d83ff4033fe9c13a8fc4d54b89ddc5a57d506263ff31cf77c",
        "237733b54a7844042a5e73e55b9367f63f92bbfae85df9abd2e2d50c018b6924",
        "2d8b2dc217b4cb015348382c018a6b029b034aa07879305f277bcdc4498dac19",
        "2dbb7cf86ab9d16042f5a76ccea91dd9e1028c10b93e71b76d3c9091495ea450",
        "30c72bc2eaa5cc7773d894f74d5f11c37e009ccc71fe2e4cc225c8a3027292a6",
        "38daba24d2f9b19f05a555d99240dea9fa7f62dc43212e8441aeb4ca327ccbe9",
        "407806eb0e9d3a30a3613f73e819b94385983225c3c7a0441e171bb3bbe7dc33",
        "41ee7e55c59c476331bd5044101bad4d3e1483849d7f83fefa7b11335749c3e8",
        "46669b0906b08d1b0c456a845121f854f3a57199ffae891f3ce44bf72a0fae52",
        "4c351e90a780c2fe9a1e088206b5db6ce8b78bc22cb225a78ad8104db8ca67ad",
        "5ba00f9a330afc95488178621fdd91905e870e63fafb1cf5defee7bd773d1915",
        "6380f0dbd4216320aa074f912fd4187f0089b85b4c002c797b65922ce6d82037",
        "721bb175637c5b1b6e05e174c06ae4944f631a100d070a926977b26b80f5f80b",
        "75b8afc24e3ce00c9ba0265be321ac43710faa0150f3955690fd2f031a5dca6f",
        "78ce75456a974e663dce5cf7b9974af7feaae515fa7dd5f3ee2fe960a691a7ed",
        "7d7151bd7679caf14323f6fb41e850f4d34c28aeb2320c159791e7d2f3ea75c5",
        "863c3f564aae4667ee64083a69fd136ead1314e1dfe58fe1ee5488df3592c538",
        "96776b52720ae32438c2bc4fcf90029a96bc676970f19c65296e31f6c2e57d01",
        "98a1390378cb5fcf350998677922edd7383e04ef12e7a32875559d772af56381",
        "9fb4b9b0e18079e3241fc8ce7558ced87a6b6d372e861f6ec7fe6a3601ec300c",
        "b4e230b8967ad269f961699d87e536c9a731852d96dbf014caf051cced2ec88e",
        "ba14ef7873258da3a6422346d0dcaa732b715c1c790d09a9a06a1294df3c613e",
        "cb93c4348a04fd0a71d58e22060f010124ab891ad19ccc101463985909ceb4e1",
        "d3422902389e5eea41b07a00c1febaca1ca728de61fde0f32fbed18eb020447f",
    }
)

_KEYS = frozenset(base64.b64decode(k) for k in DEV_PUBLIC_KEYS.values())
_TRUE = ("1", "true", "yes", "on")


class DevModeSettings(ComponentSettings):
    """``SIMPUL_DEV_MODE``: 1/true/yes/on for a development run; anything else: not."""

    dev_mode: str = Field(default="", validation_alias=DEV_MODE_VARIABLE)


def dev_mode() -> bool:
    """Whether ``SIMPUL_DEV_MODE`` says this is a development run (read each time)."""
    return DevModeSettings.load().dev_mode.strip().lower() in _TRUE


def is_dev_key(public_key: bytes) -> bool:
    """A public key whose private half is public (deploy/keys, the documented example)."""
    return bytes(public_key) in _KEYS


def is_dev_secret(value: str) -> bool:
    """A password or token of deploy/dev.env."""
    return hashlib.sha256(value.encode()).hexdigest() in DEV_SECRET_DIGESTS


def refuse_dev_keys(key_ids: Iterable[str], what: str) -> None:
    """Raise unless development mode is set, naming the development keys ``what`` holds."""
    found = sorted(key_ids)
    if found and not dev_mode():
        raise ConfigurationError(
            f"{what} holds development key(s) {', '.join(found)}, whose private halves are "
            "public (deploy/keys, docs/wire-format.md): anyone can sign with them. Use keys of "
            "your own (`simpul keys generate`), or set SIMPUL_DEV_MODE=1 for a development run"
        )


def refuse_dev_token(value: str | None, what: str) -> None:
    """Raise unless development mode is set, when ``value`` is a token of deploy/dev.env (the
    bearer token of an HTTP surface: the monitor's replay, a webhook, an API)."""
    if value and is_dev_secret(value) and not dev_mode():
        raise ConfigurationError(
            f"{what} is a development token of deploy/dev.env, which is public (in git): "
            "anyone could present it. Generate your own (python -c 'import secrets; "
            "print(secrets.token_urlsafe(24))'), or set SIMPUL_DEV_MODE=1 for a development run"
        )


def refuse_dev_secret(value: str | None, what: str) -> None:
    """Raise unless development mode is set, when ``value`` is a password of deploy/dev.env."""
    if value and is_dev_secret(value) and not dev_mode():
        raise ConfigurationError(
            f"{what} is a development password of deploy/dev.env, which is public (in git): "
            "generate your own passwords for anything real, or set SIMPUL_DEV_MODE=1 for a "
            "development run"
        )
