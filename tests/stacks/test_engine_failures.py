"""What a user sees when the cloud refuses part of an `up`: the Pulumi CLI's own output of a
failed update (classified by the Automation API's real `create_command_error`), through the
real `PulumiStack` and the `llmcloud` command, to its three lines, exit code and `--json`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pulumi.automation._cmd import CommandResult
from pulumi.automation.errors import create_command_error

from llmcloud.providers.aws.provider import AwsProvider
from llmcloud.stacks.automation import translate_command_error
from llmcloud.stacks.errors import CredentialsError, ExitCode
from tests.stacks.fakes import FakeStack, fake_aws_project

CAPACITY = ("creating EC2 Instance: operation error EC2: RunInstances, https response error "
            "StatusCode: 500, RequestID: 5f1c, api error InsufficientInstanceCapacity: We "
            "currently do not have sufficient g5.xlarge capacity in the Availability Zone you "
            "requested (us-east-1a).")
RESOURCE_ERROR = f"""\
  aws:ec2/launchTemplate:LaunchTemplate (llm-dev-servers):
    error: 1 error occurred:
    \t* {CAPACITY}
"""
STACK_VERDICT = """\
  pulumi:pulumi:Stack (llmcloud-dev):
    error: update failed
"""
PENDING_WARNING = (  # as Pulumi words it (its docs' "Interrupted updates")
    "  pulumi:pulumi:Stack (llmcloud-dev):\n"
    "    warning: Attempting to deploy or update resources with 1 pending operations from "
    "previous deployment.\n"
    "      * urn:pulumi:dev::llmcloud::aws:s3/bucket:Bucket::llm-dev-store, interrupted while "
    "creating\n"
    "    These resources are in an unknown state because the Pulumi CLI was interrupted while "
    "waiting for changes to these resources\n"
    "    to complete.\n")


def _failed_update(*diagnostics: str, stderr: str = "") -> Exception:
    """The Automation API's error for a failed `pulumi up`, as the CLI words it (the
    Diagnostics list the stack's verdict before or after the resources' errors)."""
    stdout = ("Updating (dev):\n"
              " +  aws:ec2/launchTemplate:LaunchTemplate llm-dev-servers creating failed "
              "error: 1 error occurred:\n"
              "    pulumi:pulumi:Stack llmcloud-dev running error: update failed\n\n"
              "Diagnostics:\n" + "\n".join(diagnostics) +
              "\nResources:\n    + 12 created\n    3 unchanged\n\nDuration: 2m11s\n")
    return create_command_error(CommandResult(stdout=stdout, stderr=stderr, code=255))


@pytest.fixture
def failing_aws(monkeypatch, tmp_path: Path):
    """AWS whose engine fails with the error `failing_aws(error)` is given."""
    fake_aws_project(monkeypatch, tmp_path)

    def fail_with(error: Exception) -> None:
        monkeypatch.setattr(AwsProvider, "stack_opener", FakeStack.opener(fail_with=error))

    return fail_with


@pytest.mark.parametrize("diagnostics", [(RESOURCE_ERROR, STACK_VERDICT),
                                         (STACK_VERDICT, RESOURCE_ERROR)],
                         ids=["verdict-last", "verdict-first"])
def test_a_cloud_refusal_half_way_through_up_shows_the_clouds_reason(failing_aws, cli,
                                                                     diagnostics) -> None:
    failing_aws(_failed_update(*diagnostics))
    result = cli("up", "--provider", "aws", "--json")
    assert result.exit_code == ExitCode.ERROR
    assert result.stderr.splitlines()[-3:] == [
        "error: the cloud has no capacity for the servers of stack 'dev' right now",
        f"  {CAPACITY}",
        "hint: the zone or region is out of this GPU type for now (not your quota): run "
        "llmcloud up again later, or set another region or compute.instance_type",
    ]
    document = json.loads(result.stdout)  # one document, the error's
    assert document["exit_code"] == 1 and "InsufficientInstanceCapacity" in document["context"]
    assert "Traceback" not in result.stderr


def test_an_up_going_on_despite_pending_operations_fails_for_its_own_reason(failing_aws, cli):
    # the warning quotes "interrupted while creating": the failure was reported as "pending
    # operations" with `llmcloud refresh` as the fix, and the capacity error went unsaid
    failing_aws(_failed_update(PENDING_WARNING, RESOURCE_ERROR, STACK_VERDICT))
    result = cli("up", "--provider", "aws")
    assert result.exit_code == ExitCode.ERROR
    assert "pending operations" not in result.stderr
    assert "InsufficientInstanceCapacity" in result.stderr


EXPIRED = {
    "aws": "error: operation error STS: GetCallerIdentity, https response error StatusCode: 403,"
           " RequestID: 1a2b, api error ExpiredToken: The security token included in the "
           "request is expired",
    "gcp": "error: oauth2: \"invalid_grant\" \"reauth related error (invalid_rapt)\"",
    "azure": "error: building credentials: AzureCLICredential: ERROR: AADSTS700082: The refresh "
             "token has expired due to inactivity. Please run 'az login' to setup account.",
}


def test_expired_cloud_credentials_exit_3_naming_the_login(failing_aws, cli) -> None:
    # the README gives exit 3 to missing credentials: an `up` the cloud refused for expired
    # ones was "the Pulumi engine failed" (exit 1, "run again with --debug")
    failing_aws(_failed_update(f"  pulumi:providers:aws (default):\n    {EXPIRED['aws']}\n",
                               STACK_VERDICT))
    result = cli("up", "--provider", "aws", "--json")
    assert result.exit_code == ExitCode.MISSING_TOOL
    lines = result.stderr.splitlines()[-3:]
    assert lines[0].startswith("error: the cloud refused the credentials for stack 'dev'")
    assert "ExpiredToken" in lines[1]
    assert lines[2] == "hint: renew them (aws configure), then run the command again"
    assert json.loads(result.stdout)["exit_code"] == 3


@pytest.mark.parametrize("cloud", ["gcp", "azure"])
def test_expired_credentials_on_the_other_clouds_are_credentials_errors(cloud) -> None:
    error = _failed_update(f"  pulumi:providers:{cloud} (default):\n    {EXPIRED[cloud]}\n",
                           STACK_VERDICT)
    translated = translate_command_error(error, "dev", "the login")
    assert isinstance(translated, CredentialsError)
    assert translated.exit_code == ExitCode.MISSING_TOOL
    assert translated.hint == "renew them (the login), then run the command again"


def test_a_program_exception_shows_the_exception_not_its_header() -> None:
    # (a guard for the Diagnostics rule above: the first error of a Python program's
    # failure is a header, its traceback's last line the exception)
    error = _failed_update(
        "  pulumi:pulumi:Stack (llmcloud-dev):\n"
        "    error: Program failed with an unhandled exception:\n"
        "    Traceback (most recent call last):\n"
        '      File "/project/stacks/__main__.py", line 5, in <module>\n'
        "        main()\n"
        "    KeyError: 'endpoint_url'\n", RESOURCE_ERROR)
    assert translate_command_error(error, "dev").context == "KeyError: 'endpoint_url'"
