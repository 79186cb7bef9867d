"""Certificates and tokens for devcluster (made once, kept in the state dir)."""
from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .paths import BRIDGE_IP, CLUSTER_DOMAIN, KUBERNETES_SERVICE_IP

VALID_DAYS = 3650


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _ca(pki: Path) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    crt, keyf = pki / "ca.crt", pki / "ca.key"
    if crt.exists() and keyf.exists():
        return (x509.load_pem_x509_certificate(crt.read_bytes()),
                serialization.load_pem_private_key(keyf.read_bytes(), None))  # type: ignore[return-value]
    key = _key()
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name("kubelab-devcluster-ca")).issuer_name(_name("kubelab-devcluster-ca"))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    _write_key(keyf, key)
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _leaf(pki: Path, name: str, cn: str, org: str | None, server: bool, client: bool,
          dns: list[str] = (), ips: list[str] = ()) -> None:
    crt, keyf = pki / f"{name}.crt", pki / f"{name}.key"
    if crt.exists() and keyf.exists():
        return
    ca_cert, ca_key = _ca(pki)
    key = _key()
    now = dt.datetime.now(dt.timezone.utc)
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
    b = (x509.CertificateBuilder().subject_name(_name(cn, org)).issuer_name(ca_cert.subject)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=VALID_DAYS))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.ExtendedKeyUsage(usages), critical=False))
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    _write_key(keyf, key)
    crt.write_bytes(b.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))


def ensure_pki(pki: Path) -> None:
    """CA, apiserver serving cert, apiserver->kubelet client cert, kubelet serving
    cert and the service-account signing key pair. Existing files are kept."""
    pki.mkdir(parents=True, exist_ok=True)
    _ca(pki)
    _leaf(pki, "apiserver", "kube-apiserver", None, server=True, client=False,
          dns=["kubernetes", "kubernetes.default", "kubernetes.default.svc", f"kubernetes.default.svc.{CLUSTER_DOMAIN}",
               "localhost"],
          ips=["127.0.0.1", BRIDGE_IP, KUBERNETES_SERVICE_IP])
    _leaf(pki, "apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters", server=False, client=True)
    _leaf(pki, "kubelet", "kubelab-node-agent", None, server=True, client=False, dns=["localhost"],
          ips=["127.0.0.1", BRIDGE_IP])
    sa = pki / "sa.key"
    if not sa.exists():
        key = _key()
        _write_key(sa, key)
        (pki / "sa.pub").write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                                   serialization.PublicFormat.SubjectPublicKeyInfo))


def ensure_tokens(path: Path, identities: dict[str, tuple[str, list[str]]]) -> dict[str, str]:
    """Static token file for the apiserver: one token per identity.

    ``identities`` maps a short name to (username, groups). Tokens already in the
    file are kept; returns {short name: token}.
    """
    existing: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            token, user, uid, *_ = line.split(",", 3)
            existing[uid] = token
    tokens = {n: existing.get(n) or secrets.token_hex(24) for n in identities}
    lines = []
    for n, (user, groups) in identities.items():
        line = f"{tokens[n]},{user},{n}"
        if groups:
            line += ',"' + ",".join(groups) + '"'
        lines.append(line)
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return tokens
