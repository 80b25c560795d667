"""A throwaway certificate authority for TLS tests, made with the ``openssl`` command line.

    ca = CertificateAuthority.create(tmp_path / "ca")
    server = ca.issue("redis", ip="127.0.0.1")        # serverAuth, SAN IP:127.0.0.1
    client = ca.issue("svc-dinsos", client=True)       # clientAuth, for mutual TLS

Keys are P-256 (fast to generate), unencrypted, valid for two days. The extensions are those a
strict verifier (Python 3.13's ``VERIFY_X509_STRICT``) asks for: a critical ``basicConstraints``
and ``keyUsage`` on the CA, key identifiers on every certificate.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

_DAYS = "2"
_CURVE = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def openssl() -> str:
    """The ``openssl`` binary; a clear failure (not a skip) if it is missing."""
    binary = shutil.which("openssl")
    if binary is None:
        raise RuntimeError("the TLS tests need the openssl command line (Debian: openssl)")
    return binary


def _run(*args: str, cwd: Path) -> None:
    result = subprocess.run(
        [openssl(), *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed ({result.returncode}): {result.stderr}")


@dataclass(frozen=True)
class Issued:
    """A certificate and its key, as PEM files."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class CertificateAuthority:
    directory: Path
    cert: Path
    key: Path

    @classmethod
    def create(cls, directory: Path, name: str = "Simpul Test CA") -> CertificateAuthority:
        directory.mkdir(parents=True, exist_ok=True)
        cert, key = directory / "ca.crt", directory / "ca.key"
        _run(
            "req",
            "-x509",
            *_CURVE,
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            _DAYS,
            "-subj",
            f"/O=Simpul tests/CN={name}",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-addext",
            "subjectKeyIdentifier=hash",
            cwd=directory,
        )
        return cls(directory, cert, key)

    def issue(
        self, name: str, *, ip: str | None = None, dns: str | None = None, client: bool = False
    ) -> Issued:
        """A leaf certificate signed by this CA: a server's (``ip``/``dns`` become its
        subjectAltName) or, with ``client=True``, a client's."""
        key, csr, cert = (self.directory / f"{name}.{ext}" for ext in ("key", "csr", "crt"))
        _run(
            "req",
            "-new",
            *_CURVE,
            "-keyout",
            str(key),
            "-out",
            str(csr),
            "-subj",
            f"/O=Simpul tests/CN={name}",
            cwd=self.directory,
        )
        lines = [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature",
            f"extendedKeyUsage={'clientAuth' if client else 'serverAuth'}",
            "subjectKeyIdentifier=hash",
            "authorityKeyIdentifier=keyid:always",
        ]
        names = [f"IP:{ip}"] if ip else []
        names += [f"DNS:{dns}"] if dns else []
        if names:
            lines.append(f"subjectAltName={','.join(names)}")
        extensions = self.directory / f"{name}.ext"
        extensions.write_text("\n".join(lines) + "\n")
        _run(
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(self.cert),
            "-CAkey",
            str(self.key),
            "-CAcreateserial",
            "-out",
            str(cert),
            "-days",
            _DAYS,
            "-sha256",
            "-extfile",
            str(extensions),
            cwd=self.directory,
        )
        return Issued(cert, key)


def encrypted_key(key: Path, destination: Path, password: str = "test-only") -> Path:
    """A copy of ``key`` encrypted with ``password`` (AES-256), as a careful admin might keep it."""
    _run(
        "pkey",
        "-in",
        str(key),
        "-aes256",
        "-passout",
        f"pass:{password}",
        "-out",
        str(destination),
        cwd=destination.parent,
    )
    return destination
