"""Credential checks for the clouds, each naming the command that fixes what is missing.

They look only at what the cloud's own tools look at (environment variables, the files the
cloud CLIs write, and the SDK's default chain when it is installed), and never print a secret.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path

from llmcloud.stacks.errors import CredentialsError


def _home(environ: Mapping[str, str]) -> Path:
    return Path(environ.get("HOME") or os.path.expanduser("~"))


def check_aws(environ: Mapping[str, str]) -> None:
    """AWS: static keys, a profile, web identity, container or instance credentials."""
    if environ.get("AWS_ACCESS_KEY_ID") and environ.get("AWS_SECRET_ACCESS_KEY"):
        return
    if environ.get("AWS_WEB_IDENTITY_TOKEN_FILE") or environ.get(
        "AWS_CONTAINER_CREDENTIALS_FULL_URI"
    ) or environ.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        return
    if importlib.util.find_spec("botocore") is not None:
        import botocore.session

        session = botocore.session.Session(profile=environ.get("AWS_PROFILE"))
        try:
            if session.get_credentials() is not None:
                return
        except Exception as exc:  # a broken profile is reported like a missing one
            raise _aws_missing(str(exc)) from None
    raise _aws_missing("no access key, profile, SSO session or instance role was found")


def _aws_missing(context: str) -> CredentialsError:
    return CredentialsError(
        "no AWS credentials found", context=context, hint="aws configure  (or: aws sso login)"
    )


def check_gcp(environ: Mapping[str, str]) -> None:
    """GCP: application default credentials (a key file, `gcloud auth`, or the metadata server)."""
    key_file = environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if key_file:
        if Path(key_file).is_file():
            return
        raise CredentialsError(
            "GOOGLE_APPLICATION_CREDENTIALS names a file that does not exist",
            context=key_file,
            hint="gcloud auth application-default login",
        )
    adc = _home(environ) / ".config" / "gcloud" / "application_default_credentials.json"
    if adc.is_file():
        return
    if environ.get("GCE_METADATA_HOST") or environ.get("K_SERVICE"):
        return
    raise CredentialsError(
        "no Google Cloud credentials found",
        context="no application default credentials and no key file",
        hint="gcloud auth application-default login",
    )


def check_azure(environ: Mapping[str, str]) -> None:
    """Azure: the ARM_* service principal or managed identity Pulumi signs in with (the one
    llmcloud's own requests use too: `azure/sign_in.py`), else what DefaultAzureCredential
    reads (AZURE_* variables, workload identity, a managed identity, an `az login` session).
    An ARM_ principal set up only in part is refused here, not at its first token."""
    from llmcloud.providers.azure.sign_in import arm_method

    if arm_method(environ) is not None:
        return
    # DefaultAzureCredential's EnvironmentCredential and WorkloadIdentityCredential
    if environ.get("AZURE_CLIENT_ID") and environ.get("AZURE_TENANT_ID") and (
            environ.get("AZURE_CLIENT_SECRET") or environ.get("AZURE_CLIENT_CERTIFICATE_PATH")
            or environ.get("AZURE_FEDERATED_TOKEN_FILE")):
        return
    if environ.get("IDENTITY_ENDPOINT"):
        return
    azure_dir = Path(environ.get("AZURE_CONFIG_DIR") or _home(environ) / ".azure")
    if any(azure_dir.glob("msal_token_cache.*")) or (azure_dir / "accessTokens.json").is_file():
        return
    from llmcloud.providers.azure.sign_in import unfinished_principal

    raise unfinished_principal(environ) or CredentialsError(
        "no Azure credentials found",
        context="no service principal, managed identity or `az login` session",
        hint="az login",
    )
