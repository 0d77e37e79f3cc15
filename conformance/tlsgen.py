"""Throwaway certificates for TLS runs, made with the ``openssl`` command in a
temporary folder: a CA, and a server certificate it signs for 127.0.0.1 and
localhost.  Nothing here is ever written into the project."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from conformance.targets import Target, TargetError


@dataclass(frozen=True)
class CertificateSet:
    ca: Path
    certificate: Path  # the server's, for 127.0.0.1 and localhost
    key: Path
    client: Path  # a client's, signed by the same CA
    client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise TargetError(f"openssl {args[0]} failed: {done.stderr.strip()[-300:]}")


def make_certificates(directory: Path) -> CertificateSet:
    if shutil.which("openssl") is None:
        raise TargetError("the openssl command is missing (apt-get install openssl)")
    directory.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
             "-out", "ca.pem", "-days", "2", "-subj", "/CN=gearspec throwaway CA",
             cwd=directory)
    (directory / "server.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    (directory / "client.cnf").write_text("extendedKeyUsage=clientAuth\n")
    for name, subject in (("server", "/CN=127.0.0.1"), ("client", "/CN=gearspec client")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
                 f"{name}.csr", "-subj", subject, cwd=directory)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile",
                 f"{name}.cnf", cwd=directory)
    return CertificateSet(directory / "ca.pem", directory / "server.pem",
                          directory / "server.key", directory / "client.pem",
                          directory / "client.key")


def client_context(ca: Path | str | None = None, certificate: Path | str | None = None,
                   key: Path | str | None = None) -> ssl.SSLContext:
    """What a client trusts (``ca``, else the system's CAs) and, if given, the
    certificate it shows."""
    try:
        context = ssl.create_default_context(cafile=str(ca) if ca else None)
        if certificate:
            context.load_cert_chain(str(certificate), str(key) if key else None)
    except (OSError, ssl.SSLError) as error:
        raise TargetError(f"TLS client settings: {error}") from None
    return context


@dataclass(frozen=True)
class TLSSettings:
    """A run's TLS choices: ``enabled`` (servers started here get ``--ssl`` and
    throwaway certificates) and what clients trust and show."""

    enabled: bool = False
    ca: str | None = None
    certificate: str | None = None
    key: str | None = None


class TLSSetup:
    """TLS for one target's servers: a server we start gets ``--ssl`` with a
    throwaway CA and certificate (made once, in a temporary folder removed at
    the end); clients trust that CA, or the one given (``--tls-ca``)."""

    def __init__(self, settings: TLSSettings) -> None:
        self.settings = settings
        self.folder: Path | None = None
        self.certificates: CertificateSet | None = None

    def apply(self, target: Target) -> None:
        ca, cert, key = self.settings.ca, self.settings.certificate, self.settings.key
        if self.settings.enabled and not target.name.startswith("tls://"):
            if self.certificates is None:
                self.folder = Path(tempfile.mkdtemp(prefix="gearspec-tls-"))
                self.certificates = make_certificates(self.folder)
            made = self.certificates
            extra = target.tls_options(made.ca, made.certificate, made.key)
            if extra is None:
                raise TargetError(f"{target.name}: this server has no TLS; give a "
                                  "tls://HOST:PORT target for one that already speaks it")
            target.options = [*target.options, *extra]
            # A client certificate from the same CA: gearmand and ours ask for none,
            # geard requires one.
            ca, cert, key = ca or made.ca, cert or made.client, key or made.client_key
        target.tls = client_context(ca, cert, key)
        target.capabilities = target.capabilities | {"tls"}

    def close(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
