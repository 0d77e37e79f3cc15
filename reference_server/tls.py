"""TLS for the Gear port, as gearmand's ``--ssl`` options describe it.

gearmand (built with TLS support) reads the CA file, the server certificate
and its key from ``--ssl-ca-file``, ``--ssl-certificate`` and ``--ssl-key``,
or from ``GEARMAND_CA_CERTIFICATE``, ``GEARMAND_SERVER_PEM`` and
``GEARMAND_SERVER_KEY``, which win over the options.  It loads the CA as
verify locations but does not ask clients for certificates, and neither do
we: a client proves nothing about itself, it only checks the server.

Debian's gearmand 1.1.20 is built without TLS: it accepts ``--ssl`` and then
serves plaintext on the port (the tests show it).  We serve TLS.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass


class TLSError(Exception):
    """A certificate or key that cannot be used: one line for the user."""


@dataclass(frozen=True)
class TLSFiles:
    ca_file: str | None
    certificate: str | None
    key: str | None

    @classmethod
    def from_options(cls, ca_file: str | None, certificate: str | None,
                     key: str | None) -> TLSFiles:
        env = os.environ
        return cls(env.get("GEARMAND_CA_CERTIFICATE") or ca_file,
                   env.get("GEARMAND_SERVER_PEM") or certificate,
                   env.get("GEARMAND_SERVER_KEY") or key)


def server_context(files: TLSFiles) -> ssl.SSLContext:
    if not files.certificate or not files.key:
        raise TLSError("--ssl needs --ssl-certificate and --ssl-key (or GEARMAND_SERVER_PEM "
                       "and GEARMAND_SERVER_KEY)")
    for path in (files.certificate, files.key, files.ca_file):
        if path and not os.path.isfile(path):
            raise TLSError(f"cannot read {path}: no such file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(files.certificate, files.key)
    except (ssl.SSLError, OSError) as error:
        raise TLSError(f"cannot use certificate {files.certificate} with key {files.key}: "
                       f"{getattr(error, 'reason', None) or error}") from None
    if files.ca_file:
        try:
            context.load_verify_locations(files.ca_file)
        except (ssl.SSLError, OSError) as error:
            raise TLSError(f"cannot use CA file {files.ca_file}: "
                           f"{getattr(error, 'reason', None) or error}") from None
    context.verify_mode = ssl.CERT_NONE  # as gearmand: clients need no certificate
    return context
