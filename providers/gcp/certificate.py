"""A self-signed certificate: HTTPS for a stack without a domain.

Google-managed certificates need a domain, and no public authority certifies a bare IP
address for a stack, so without `gateway.domain` the load balancer serves a certificate the
stack makes itself (pulumi-tls) for its static address. Clients trust it by its PEM, which
the stack outputs as `endpoint_certificate` (public); its private key lives in the Pulumi
state only, as a secret.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp
import pulumi_tls as tls

#: a year; an `up` in its last 30 days makes a new one (the old one stays valid to its end).
#: Nothing renews it without an `up`: the monitoring's certificate-expiry policy fires 21
#: days before its end. Kept at a year: a longer validity would replace the certificate of
#: every existing stack on its next `up`, and clients that trust its PEM with it.
VALIDITY_HOURS = 365 * 24
EARLY_RENEWAL_HOURS = 30 * 24
#: what a Compute Engine SSL certificate's key may be: RSA-2048 or ECDSA P-256
KEY_ALGORITHM, KEY_CURVE = "ECDSA", "P256"


@dataclass
class SelfSignedCertificateArgs:
    """The address the certificate names, and the prefix of its Compute Engine name."""

    address: pulumi.Input[str]
    #: a `name_prefix` (at most 37 characters): each renewal is a new certificate, made
    #: before the old one is deleted, so the proxy always has one
    name_prefix: str
    stack: str


@dataclass
class SelfSignedCertificate:
    """The Compute Engine SSL certificate for the HTTPS proxy, and its certificate's PEM:
    what clients trust (`curl --cacert`, `verify=`)."""

    ssl_certificate: gcp.compute.SSLCertificate
    pem: pulumi.Output[str]


def self_signed_certificate(name: str, args: SelfSignedCertificateArgs,
                            parent: pulumi.Resource) -> SelfSignedCertificate:
    """An ECDSA P-256 key, a certificate for the address signed by it, and the Compute
    Engine SSL certificate holding both (declared under `parent`: the load balancer's
    layer)."""
    child = pulumi.ResourceOptions(parent=parent)
    # pulumi-tls marks the key's PEM outputs secret: encrypted in the state, never shown
    key = tls.PrivateKey(f"{name}-key", algorithm=KEY_ALGORITHM, ecdsa_curve=KEY_CURVE,
                         opts=child)
    certificate = tls.SelfSignedCert(
        f"{name}-self-signed", private_key_pem=key.private_key_pem,
        ip_addresses=[args.address],
        subject={"common_name": f"llmcloud {args.stack} endpoint", "organization": "llmcloud"},
        allowed_uses=["digital_signature", "server_auth"],
        validity_period_hours=VALIDITY_HOURS, early_renewal_hours=EARLY_RENEWAL_HOURS,
        opts=child)
    # the certificate is public: it is what clients are given (made from the key's secret
    # PEM, it would otherwise be a secret, hidden from `pulumi stack output`)
    pem = pulumi.Output.unsecret(certificate.cert_pem)
    # Compute Engine certificates cannot be changed in place: a renewal replaces this one,
    # and Pulumi creates the replacement (a new name from the prefix) and moves the proxy
    # to it before deleting the old one (what Terraform's `create_before_destroy` does)
    ssl_certificate = gcp.compute.SSLCertificate(
        f"{name}-ssl", name_prefix=args.name_prefix,
        description="llmcloud: self-signed for the endpoint's address (no gateway.domain)",
        certificate=pem, private_key=key.private_key_pem,
        opts=pulumi.ResourceOptions(parent=parent, delete_before_replace=False))
    return SelfSignedCertificate(ssl_certificate, pem)
