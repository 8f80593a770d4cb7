"""llmcloud's own requests to a GCP stack without a domain (promote's "wait until the
endpoint reports the version") verify the endpoint against the certificate the stack
outputs, and only it: a real HTTPS server on loopback with a certificate shaped like the one
pulumi-tls makes (ECDSA P-256, self-signed, the address as its only name)."""

from __future__ import annotations

import datetime
import functools
import ipaddress
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

from llmcloud.providers import rollout
from llmcloud.stacks.errors import DeploymentError

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402

KEY = "sk-test"
_REAL_WAIT = rollout.wait_for_version


def self_signed(address: str) -> tuple[str, str]:
    """(certificate PEM, key PEM) as pulumi-tls's SelfSignedCert makes them for the stack:
    not a CA, digital signature and server auth, the address in subjectAltName."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "llmcloud dev endpoint"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "llmcloud")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(address))]), critical=False)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM).decode(),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode())


class _Models(BaseHTTPRequestHandler):
    """The path the edge lets through (`/v1/...`, 404 elsewhere, as Cloud Armor), with a
    key, answered as the model server does."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if not self.path.startswith("/v1/"):
            status, body = 404, {"error": "not found"}
        elif self.headers.get("Authorization") != f"Bearer {KEY}":
            status, body = 401, {"error": "unauthorized"}
        else:
            status, body = 200, {"data": [{"id": "m", "version": "v2"}]}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory) -> tuple[str, str]:
    """(https://127.0.0.1:PORT, its certificate's PEM)."""
    folder: Path = tmp_path_factory.mktemp("endpoint")
    cert, key = self_signed("127.0.0.1")
    (folder / "cert.pem").write_text(cert)
    (folder / "key.pem").write_text(key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Models)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_address[1]}", cert
    server.shutdown()
    server.server_close()


def _provider() -> SimpleNamespace:
    return SimpleNamespace(api_key_headers=lambda key: {"Authorization": f"Bearer {key}"},
                           endpoint_reports_version=lambda ctx: True)


def _ctx() -> SimpleNamespace:
    return SimpleNamespace(environ={"LLMCLOUD_API_KEY": KEY})


def _fast(monkeypatch, *, ticks: int = 1000) -> None:
    clock = iter(range(ticks))
    monkeypatch.setattr(rollout, "wait_for_version", functools.partial(
        _REAL_WAIT, sleep=lambda s: None, clock=lambda: float(next(clock))))


def test_promote_verifies_the_endpoint_by_the_certificate_the_stack_outputs(
        endpoint, monkeypatch) -> None:
    url, cert = endpoint
    _fast(monkeypatch)
    # GCP's endpoint_url has no /v1 (clients add it); the edge answers 404 outside /v1/
    outputs = {"endpoint_url": url, "endpoint_certificate": cert}
    assert rollout._verify(_provider(), _ctx(), outputs, "v2", timeout=60) is True


def test_without_the_certificate_the_self_signed_endpoint_is_refused(endpoint,
                                                                      monkeypatch) -> None:
    url, _ = endpoint
    _fast(monkeypatch, ticks=5)
    with pytest.raises(DeploymentError) as caught:
        rollout._verify(_provider(), _ctx(), {"endpoint_url": url}, "v2", timeout=2)
    assert "CERTIFICATE_VERIFY_FAILED" in (caught.value.context or "")


def test_another_certificate_does_not_vouch_for_the_endpoint(endpoint, monkeypatch) -> None:
    # trust is the stack's own certificate, not any certificate: a renewal's new one, or an
    # impostor's, does not pass for it
    url, _ = endpoint
    other, _ = self_signed("127.0.0.1")
    _fast(monkeypatch, ticks=5)
    with pytest.raises(DeploymentError) as caught:
        rollout._verify(_provider(), _ctx(), {"endpoint_url": url,
                                              "endpoint_certificate": other}, "v2", timeout=2)
    assert "CERTIFICATE_VERIFY_FAILED" in (caught.value.context or "")


def test_the_trust_is_the_stacks_certificate_or_the_usual_authorities() -> None:
    assert rollout.endpoint_trust({"endpoint_url": "https://llm.example.com"}) is True
    cert, _ = self_signed("203.0.113.10")
    context = rollout.endpoint_trust({"endpoint_certificate": cert})
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    # that one certificate, none of the system's authorities
    assert context.cert_store_stats()["x509"] == 1


def test_a_damaged_certificate_output_is_a_clear_error() -> None:
    with pytest.raises(DeploymentError, match="not a PEM certificate"):
        rollout.endpoint_trust({"endpoint_certificate": "-----BEGIN CERTIFICATE-----\nnope"})


@pytest.mark.parametrize(("endpoint_url", "models"), [
    ("https://203.0.113.10", "https://203.0.113.10/v1/models"),
    ("https://abc.execute-api.us-east-1.amazonaws.com/api/",
     "https://abc.execute-api.us-east-1.amazonaws.com/api/v1/models"),
    ("https://api.example/v1", "https://api.example/v1/models"),
])
def test_the_version_is_asked_of_the_openai_path(endpoint_url, models) -> None:
    assert rollout.models_url(endpoint_url) == models
