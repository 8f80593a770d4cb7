"""llmcloud's own Azure requests sign in from the ARM_* variables, as pulumi-azure-native
does (`sign_in.py`); the credentials check and the credential built agree."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlparse

import pytest

from llmcloud.providers.azure.arm import Arm
from llmcloud.providers.azure.sign_in import arm_method, caller_credential
from llmcloud.providers.credentials import check_azure
from llmcloud.stacks.errors import CredentialsError
from tests.providers.fakes import AzureToken, serving

PRINCIPAL = {"ARM_CLIENT_ID": "client-1", "ARM_TENANT_ID": "tenant-1"}


@pytest.fixture
def made(monkeypatch):
    """The azure-identity classes, each noting how it was made (no token is asked for)."""
    import azure.identity

    built = []

    def recorder(name):
        def make(*args, **kwargs):
            built.append((name, args, kwargs))
            return (name, args, kwargs)
        return make

    for name in ("DefaultAzureCredential", "ClientSecretCredential", "CertificateCredential",
                 "ClientAssertionCredential", "ManagedIdentityCredential"):
        monkeypatch.setattr(azure.identity, name, recorder(name))
    return built


def test_a_client_secret_signs_in_to_the_clouds_entra_id(made):
    Arm({**PRINCIPAL, "ARM_CLIENT_SECRET": "s3cret", "ARM_ENVIRONMENT": "usgovernment"})
    assert made == [("ClientSecretCredential", ("tenant-1", "client-1", "s3cret"),
                     {"authority": "login.microsoftonline.us"})]


def test_a_client_certificate_with_its_password(made, tmp_path):
    pfx = tmp_path / "sp.pfx"
    pfx.write_bytes(b"not read here")
    caller_credential({**PRINCIPAL, "ARM_CLIENT_CERTIFICATE_PATH": str(pfx),
                       "ARM_CLIENT_CERTIFICATE_PASSWORD": "pw", "ARM_CLIENT_SECRET": "s"})
    # pulumi-azure-native's order: a certificate before a secret
    assert made == [("CertificateCredential", ("tenant-1", "client-1"),
                     {"certificate_path": str(pfx), "password": "pw",
                      "authority": "login.microsoftonline.com"})]


def test_a_managed_identity_from_arm_use_msi(made):
    caller_credential({"ARM_USE_MSI": "true"})
    caller_credential({"ARM_USE_MSI": "true", "ARM_CLIENT_ID": "user-assigned"})
    assert made == [("ManagedIdentityCredential", (), {"client_id": None}),
                    ("ManagedIdentityCredential", (), {"client_id": "user-assigned"})]


def test_an_oidc_token_is_the_assertion(made, tmp_path):
    caller_credential({**PRINCIPAL, "ARM_USE_OIDC": "true", "ARM_OIDC_TOKEN": "jwt-1",
                       "ARM_ENVIRONMENT": "china"})
    (name, args, kwargs), = made
    assert (name, args[:2], kwargs) == ("ClientAssertionCredential", ("tenant-1", "client-1"),
                                        {"authority": "login.chinacloudapi.cn"})
    assert args[2]() == "jwt-1"


def test_an_oidc_token_file_is_read_at_each_sign_in(made, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("jwt-1\n")
    caller_credential({**PRINCIPAL, "ARM_USE_OIDC": "true",
                       "ARM_OIDC_TOKEN_FILE_PATH": str(token_file)})
    assertion = made[0][1][2]
    assert assertion() == "jwt-1"
    token_file.write_text("jwt-2")  # rotated by the platform
    assert assertion() == "jwt-2"


def test_azure_variables_alone_keep_default_azure_credential(made):
    caller_credential({"AZURE_CLIENT_ID": "c", "AZURE_TENANT_ID": "t",
                       "AZURE_CLIENT_SECRET": "s"})
    caller_credential({"ARM_USE_DEFAULT_AZURE_CREDENTIAL": "true", "ARM_ENVIRONMENT": "china"})
    assert made == [("DefaultAzureCredential", (), {}),
                    ("DefaultAzureCredential", (), {"authority": "login.chinacloudapi.cn"})]


class GitHubTokenEndpoint(BaseHTTPRequestHandler):
    """GitHub Actions' ID token endpoint: a GET with the request token as bearer."""

    asked: list = []
    status = 200

    def do_GET(self):  # noqa: N802 - http.server's name
        type(self).asked.append((self.path, self.headers.get("Authorization")))
        body = b'{"value": "github-jwt"}' if self.status == 200 else b'{"message": "no"}'
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def github(monkeypatch):
    monkeypatch.setattr(GitHubTokenEndpoint, "asked", [])
    monkeypatch.setattr(GitHubTokenEndpoint, "status", 200)
    with serving(GitHubTokenEndpoint) as url:
        yield url


def test_a_github_oidc_token_is_asked_of_the_request_url_with_the_request_token(made, github):
    environ = {**PRINCIPAL, "ARM_USE_OIDC": "true",
               "ACTIONS_ID_TOKEN_REQUEST_URL": github + "/idtoken?api-version=2.0",
               "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "request-token"}
    check_azure(environ)  # the GitHub Actions way passes the check
    caller_credential(environ)
    assert made[0][0] == "ClientAssertionCredential"
    assert made[0][1][2]() == "github-jwt"
    (path, authorization), = GitHubTokenEndpoint.asked
    assert authorization == "Bearer request-token"
    assert urlparse(path).path == "/idtoken"
    assert parse_qs(urlparse(path).query) == {"api-version": ["2.0"],
                                              "audience": ["api://AzureADTokenExchange"]}


def test_arm_oidc_request_variables_come_before_githubs_and_name_the_audience(made, github):
    caller_credential({**PRINCIPAL, "ARM_USE_OIDC": "true",
                       "ARM_OIDC_REQUEST_URL": github + "/arm", "ARM_OIDC_REQUEST_TOKEN": "arm",
                       "ARM_OIDC_AUDIENCE": "api://custom",
                       "ACTIONS_ID_TOKEN_REQUEST_URL": github + "/gh",
                       "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "gh"})
    made[0][1][2]()
    assert GitHubTokenEndpoint.asked == [("/arm?audience=api%3A%2F%2Fcustom", "Bearer arm")]


def test_a_refused_oidc_token_request_is_a_credentials_error(made, github):
    GitHubTokenEndpoint.status = 403
    caller_credential({**PRINCIPAL, "ARM_USE_OIDC": "true",
                       "ACTIONS_ID_TOKEN_REQUEST_URL": github + "/idtoken",
                       "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "request-token"})
    with pytest.raises(CredentialsError) as refused:
        made[0][1][2]()
    assert refused.value.context == "HTTP 403" and "id-token: write" in refused.value.hint
    assert "request-token" not in str(refused.value.to_dict())


@pytest.mark.parametrize("environ,message,hint", [
    ({**PRINCIPAL, "ARM_USE_OIDC": "true"}, "ARM_USE_OIDC is true but no OIDC token was found",
     "id-token: write"),
    ({"ARM_CLIENT_ID": "c", "ARM_CLIENT_SECRET": "s"},
     "ARM_TENANT_ID is not set for a service principal's secret (ARM_CLIENT_SECRET)",
     "export ARM_TENANT_ID"),
    ({**PRINCIPAL, "ARM_USE_OIDC": "true", "ARM_OIDC_TOKEN_FILE_PATH": "/nonexistent/token"},
     "ARM_OIDC_TOKEN_FILE_PATH names a file that does not exist", "federated token"),
    ({**PRINCIPAL, "ARM_CLIENT_CERTIFICATE_PATH": "/nonexistent/sp.pfx"},
     "ARM_CLIENT_CERTIFICATE_PATH names a file that does not exist", "PEM or PFX"),
])
def test_an_arm_principal_set_up_in_part_is_refused_by_the_check(environ, message, hint,
                                                                 tmp_path):
    # an `az login` session on the machine does not make the half principal usable
    (tmp_path / ".azure").mkdir()
    (tmp_path / ".azure" / "msal_token_cache.json").write_text("{}")
    for attempt in (lambda: check_azure({**environ, "HOME": str(tmp_path)}),
                    lambda: caller_credential(environ)):
        with pytest.raises(CredentialsError) as refused:
            attempt()
        assert refused.value.message == message and hint in refused.value.hint


@pytest.mark.parametrize("environ,hint", [
    (PRINCIPAL, "ARM_CLIENT_SECRET"),
    ({**PRINCIPAL, "ARM_OIDC_TOKEN": "jwt"}, "export ARM_USE_OIDC=true"),
])
def test_a_client_id_without_a_way_to_sign_in_passes_to_az_login_as_in_pulumi(
        environ, hint, tmp_path, made):
    # pulumi-azure-native passes over it to the `az login` session: so does llmcloud
    with pytest.raises(CredentialsError) as refused:
        check_azure({**environ, "HOME": str(tmp_path)})
    assert refused.value.message == "ARM_CLIENT_ID is set without a way to sign in"
    assert hint in refused.value.hint
    (tmp_path / ".azure").mkdir()
    (tmp_path / ".azure" / "msal_token_cache.json").write_text("{}")
    check_azure({**environ, "HOME": str(tmp_path)})
    assert arm_method(environ) is None
    caller_credential(environ)
    assert [name for name, *_ in made] == ["DefaultAzureCredential"]


def test_what_default_azure_credential_cannot_read_is_no_credential(tmp_path):
    home = {"HOME": str(tmp_path)}
    for environ in ({"AZURE_CLIENT_ID": "c", "AZURE_TENANT_ID": "t", "AZURE_OIDC_TOKEN": "x"},
                    {"ARM_USE_MSI": "1"}):  # pulumi-azure-native takes only "true"
        with pytest.raises(CredentialsError, match="no Azure credentials found"):
            check_azure({**environ, **home})
    check_azure({"AZURE_CLIENT_ID": "c", "AZURE_TENANT_ID": "t",
                 "AZURE_FEDERATED_TOKEN_FILE": "/var/run/token", **home})
    assert arm_method({"ARM_USE_MSI": "true"}) == "managed_identity"


@pytest.mark.parametrize("environ", [
    {**PRINCIPAL, "ARM_CLIENT_SECRET": "s"},
    {**PRINCIPAL, "ARM_USE_OIDC": "true", "ARM_OIDC_TOKEN": "jwt"},
    {"ARM_USE_MSI": "true", "ARM_CLIENT_ID": "c"},
])
def test_the_real_azure_identity_classes_take_these_arguments(environ):
    import azure.identity

    expected = {"ARM_CLIENT_SECRET": azure.identity.ClientSecretCredential,
                "ARM_USE_OIDC": azure.identity.ClientAssertionCredential,
                "ARM_USE_MSI": azure.identity.ManagedIdentityCredential}
    kind = next(expected[name] for name in expected if name in environ)
    assert isinstance(caller_credential({**environ, "ARM_ENVIRONMENT": "china"}), kind)


def test_a_refused_token_for_the_image_push_is_a_credentials_error(monkeypatch, tmp_path):
    import azure.identity

    from llmcloud.providers.azure.provider import AzureProvider
    from llmcloud.providers.base import StackContext
    from tests.providers.azure.helpers import azure_spec

    monkeypatch.setattr(azure.identity, "ClientSecretCredential",
                        lambda *args, **kwargs: AzureToken())
    monkeypatch.setattr(AzureToken, "refuse", True)
    ctx = StackContext(tmp_path, "dev", azure_spec(),
                       environ={**PRINCIPAL, "ARM_CLIENT_SECRET": "wrong"})
    with pytest.raises(CredentialsError, match="Azure refused a token") as refused:
        AzureProvider().registry_login(ctx, "llmdev1.azurecr.io/x")
    assert refused.value.context.startswith("AADSTS700016")
    assert "ARM_CLIENT_ID" in refused.value.hint  # not `az login`: the principal is wrong


def test_entra_id_out_of_reach_is_a_credentials_error_not_a_crash():
    from azure.core.exceptions import ServiceRequestError

    class Unreachable:
        def get_token(self, scope):
            raise ServiceRequestError("Connection refused")

    arm = Arm({}, credential=Unreachable())
    with pytest.raises(CredentialsError, match="could not ask Entra ID") as failed:
        arm.request("GET", "/subscriptions/x")
    assert failed.value.context == "Connection refused"
