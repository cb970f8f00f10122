"""The console's TLS certificate: self-signed on first run (with the `cryptography` package) or given.

WebXR needs a secure context, so the console speaks HTTPS/WSS only.  The
certificate is created once under the user's config directory
(`$XDG_CONFIG_HOME/surgbot/console`, else `~/.config/surgbot/console`), with
the loopback names, the host name and any requested addresses as subject
alternative names, and reused after that.  Its SHA-256 fingerprint is
printed so a user can compare it with what the headset's browser shows
before accepting it (the only check a self-signed certificate allows).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CERT_DAYS = 825                 # the longest lifetime Apple platforms accept for a TLS server certificate
CERT_NAME = "console-cert.pem"
KEY_NAME = "console-key.pem"


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "surgbot" / "console"


def _san(extra_hosts: tuple[str, ...]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = [x509.DNSName("localhost"),
                                     x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                     x509.IPAddress(ipaddress.ip_address("::1"))]
    hostname = socket.gethostname()
    for h in (hostname, f"{hostname}.local", *extra_hosts):
        if not h or h in ("0.0.0.0", "::"):
            continue
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    seen, out = set(), []
    for n in names:
        if n.value not in seen:
            seen.add(n.value)
            out.append(n)
    return x509.SubjectAlternativeName(out)


def create_self_signed(cert_path: Path, key_path: Path, extra_hosts: tuple[str, ...] = ()) -> None:
    """Write a new EC P-256 key (mode 0600) and a self-signed server certificate for it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"surgbot console {socket.gethostname()}")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
            .add_extension(_san(extra_hosts), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def fingerprint(cert_path: Path) -> str:
    """SHA-256 fingerprint, colon-separated upper-case hex (as browsers show it)."""
    cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    return ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256()))


def ensure_certificate(cert: str = "", key: str = "", extra_hosts: tuple[str, ...] = (),
                       directory: Path | None = None) -> tuple[Path, Path, bool]:
    """(cert, key, created): the given pair, or the one under the config dir (created if missing)."""
    if cert or key:
        if not (cert and key):
            raise ValueError("give both --cert and --key, or neither")
        c, k = Path(cert), Path(key)
        for p in (c, k):
            if not p.is_file():
                raise ValueError(f"{p}: no such file")
        return c, k, False
    d = directory or config_dir()
    c, k = d / CERT_NAME, d / KEY_NAME
    if c.is_file() and k.is_file():
        return c, k, False
    create_self_signed(c, k, extra_hosts)
    return c, k, True


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert), str(key))
    return ctx
