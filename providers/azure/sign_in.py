"""How llmcloud's own requests to Azure sign in: from the ARM_* variables, as Pulumi does.

pulumi-azure-native reads its service principal or managed identity from ARM_* variables
(provider/pkg/provider/auth_azidentity.go, `newSingleMethodAuthCredential`): a client
certificate, else a client secret, else OIDC (ARM_USE_OIDC), else a managed identity
(ARM_USE_MSI), else the az CLI; a method that is set up but incomplete is an error, never a
fall through. azure-identity's DefaultAzureCredential reads only AZURE_* variables, so with an
ARM_ principal llmcloud builds the credential Pulumi builds, from azure-identity's own
classes; with none, DefaultAzureCredential (AZURE_* variables, workload identity, a managed
identity, `az login`). Nothing here imports an Azure SDK until a credential is built.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from llmcloud.stacks.errors import CredentialsError

#: the audience GitHub's ID token is asked for, unless ARM_OIDC_AUDIENCE names another
#: (Entra ID's federated credentials expect this one by default)
TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"
#: what each way of signing in is called in messages
METHODS = {"default": "DefaultAzureCredential (ARM_USE_DEFAULT_AZURE_CREDENTIAL)",
           "certificate": "a service principal's certificate (ARM_CLIENT_CERTIFICATE_PATH)",
           "secret": "a service principal's secret (ARM_CLIENT_SECRET)",
           "oidc": "a service principal's OIDC token (ARM_USE_OIDC)",
           "managed_identity": "a managed identity (ARM_USE_MSI)"}
_FIX = ("export ARM_CLIENT_SECRET (or ARM_CLIENT_CERTIFICATE_PATH, or ARM_USE_OIDC=true), "
        "or sign in with `az login`")


def arm_method(environ: Mapping[str, str]) -> str | None:
    """The way the ARM_* variables sign in, in pulumi-azure-native's order: a key of
    `METHODS`, or None where they name none (DefaultAzureCredential's turn, `az login`
    included, as Pulumi's last method). CredentialsError for a method set up only in part
    (a secret without a tenant id, OIDC without a token, a missing certificate file)."""
    if _flag(environ, "ARM_USE_DEFAULT_AZURE_CREDENTIAL"):
        return "default"
    certificate = environ.get("ARM_CLIENT_CERTIFICATE_PATH")
    if certificate:
        _require_principal(environ, "certificate")
        if not Path(certificate).is_file():
            raise CredentialsError("ARM_CLIENT_CERTIFICATE_PATH names a file that does not exist",
                                   context=certificate,
                                   hint="point it at the service principal's PEM or PFX file")
        return "certificate"
    if environ.get("ARM_CLIENT_SECRET"):
        _require_principal(environ, "secret")
        return "secret"
    if _flag(environ, "ARM_USE_OIDC"):
        _require_principal(environ, "oidc")
        _oidc_source(environ)
        return "oidc"
    if _flag(environ, "ARM_USE_MSI"):
        return "managed_identity"
    return None


def unfinished_principal(environ: Mapping[str, str]) -> CredentialsError | None:
    """What to say when no credential was found but ARM_CLIENT_ID is set with no way to sign
    in. pulumi-azure-native passes over such a client id to the `az login` session (its last
    method), and so does `caller_credential`: it is an error only where there is none."""
    if not environ.get("ARM_CLIENT_ID"):
        return None
    oidc_set = [name for name in ("ARM_OIDC_TOKEN", "ARM_OIDC_TOKEN_FILE_PATH")
                if environ.get(name)]
    return CredentialsError(
        "ARM_CLIENT_ID is set without a way to sign in",
        context=(f"{' and '.join(oidc_set)} take effect only with ARM_USE_OIDC=true"
                 if oidc_set else "a service principal needs ARM_CLIENT_SECRET, "
                 "ARM_CLIENT_CERTIFICATE_PATH or ARM_USE_OIDC=true; a managed identity "
                 "ARM_USE_MSI=true"),
        hint="export ARM_USE_OIDC=true" if oidc_set else _FIX)


def caller_credential(environ: Mapping[str, str]):
    """The azure-identity credential for llmcloud's own requests: the ARM_* variables'
    (`arm_method`), signing in to the Entra ID of the cloud ARM_ENVIRONMENT names, else
    DefaultAzureCredential. CredentialsError for ARM_* variables set up only in part."""
    from llmcloud.providers.azure.clouds import callers_cloud, default_credential

    cloud = callers_cloud(environ)
    method = arm_method(environ)
    if method in (None, "default"):
        return default_credential(cloud)
    import azure.identity as identity

    if method == "managed_identity":  # ARM_CLIENT_ID picks a user-assigned identity
        return identity.ManagedIdentityCredential(client_id=environ.get("ARM_CLIENT_ID") or None)
    tenant, client = environ["ARM_TENANT_ID"], environ["ARM_CLIENT_ID"]
    authority = cloud.authority_host
    if method == "certificate":
        return identity.CertificateCredential(
            tenant, client, certificate_path=environ["ARM_CLIENT_CERTIFICATE_PATH"],
            password=environ.get("ARM_CLIENT_CERTIFICATE_PASSWORD") or None, authority=authority)
    if method == "secret":
        return identity.ClientSecretCredential(tenant, client, environ["ARM_CLIENT_SECRET"],
                                               authority=authority)
    return identity.ClientAssertionCredential(tenant, client, oidc_assertion(environ),
                                              authority=authority)


def oidc_assertion(environ: Mapping[str, str]) -> Callable[[], str]:
    """What hands ClientAssertionCredential its federated token, each time it signs in:
    ARM_OIDC_TOKEN, else the file ARM_OIDC_TOKEN_FILE_PATH names (read again each time: it
    is rotated), else a token asked of ARM_OIDC_REQUEST_URL (or GitHub Actions'
    ACTIONS_ID_TOKEN_REQUEST_URL) with its request token."""
    kind, *source = _oidc_source(environ)
    if kind == "token":
        return lambda: source[0]
    if kind == "file":
        return lambda: _read_token_file(source[0])
    url, request_token = source
    audience = environ.get("ARM_OIDC_AUDIENCE") or TOKEN_EXCHANGE_AUDIENCE
    return lambda: request_id_token(url, request_token, audience)


def request_id_token(url: str, request_token: str, audience: str) -> str:
    """An ID token from a CI system's token endpoint (GitHub Actions' way: a GET with the
    request token as bearer and the audience in the query; the answer's `value`)."""
    import requests

    parts = urlsplit(url)
    query = urlencode([*((k, v) for k, v in parse_qsl(parts.query) if k != "audience"),
                       ("audience", audience)])
    host = parts.hostname or url
    failed = CredentialsError(
        f"the OIDC token request to {host} failed",
        hint="in GitHub Actions, give the job `permissions: id-token: write`")
    try:
        response = requests.get(urlunsplit(parts._replace(query=query)), timeout=30, headers={
            "Authorization": f"Bearer {request_token}", "Accept": "application/json"})
    except requests.RequestException as exc:
        failed.context = type(exc).__name__
        raise failed from None
    if response.status_code != 200:
        failed.context = f"HTTP {response.status_code}"
        raise failed
    try:
        token = response.json()["value"]
    except (ValueError, KeyError, TypeError):
        token = None
    if not isinstance(token, str) or not token:
        failed.context = "the answer holds no `value`"
        raise failed
    return token


def _oidc_source(environ: Mapping[str, str]) -> tuple[str, ...]:
    """Where the federated token comes from, in pulumi-azure-native's order."""
    if environ.get("ARM_OIDC_TOKEN"):
        return ("token", environ["ARM_OIDC_TOKEN"])
    path = environ.get("ARM_OIDC_TOKEN_FILE_PATH")
    if path:
        if not Path(path).is_file():
            raise CredentialsError("ARM_OIDC_TOKEN_FILE_PATH names a file that does not exist",
                                   context=path, hint="point it at the federated token's file")
        return ("file", path)
    for prefix in ("ARM_OIDC_REQUEST_", "ACTIONS_ID_TOKEN_REQUEST_"):
        url, token = environ.get(prefix + "URL"), environ.get(prefix + "TOKEN")
        if url and token:
            return ("request", url, token)
    raise CredentialsError(
        "ARM_USE_OIDC is true but no OIDC token was found",
        context="set ARM_OIDC_TOKEN, ARM_OIDC_TOKEN_FILE_PATH, or ARM_OIDC_REQUEST_URL with "
                "ARM_OIDC_REQUEST_TOKEN (GitHub Actions sets ACTIONS_ID_TOKEN_REQUEST_* for a "
                "job with `permissions: id-token: write`)",
        hint="in GitHub Actions, add `permissions: id-token: write` to the job")


def _read_token_file(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise CredentialsError("the OIDC token file could not be read", context=f"{path}: "
                               f"{exc.strerror or exc}",
                               hint="check ARM_OIDC_TOKEN_FILE_PATH") from None


def _require_principal(environ: Mapping[str, str], method: str) -> None:
    missing = [name for name in ("ARM_CLIENT_ID", "ARM_TENANT_ID") if not environ.get(name)]
    if missing:
        verb = "are" if len(missing) > 1 else "is"
        raise CredentialsError(f"{' and '.join(missing)} {verb} not set for {METHODS[method]}",
                               context="a service principal signs in with its client id and "
                                       "its tenant id",
                               hint=f"export {missing[0]}=<...>  (the app registration's "
                                    "Overview page shows both)")


def _flag(environ: Mapping[str, str], name: str) -> bool:
    # pulumi-azure-native takes exactly "true"; anything else would sign it in differently
    return environ.get(name) == "true"
