"""A name the stack asks for that is already someone else's in the cloud (the same stack
name in another region or llmcloud project of the account, a kept or leftover resource):
the user is told so, with the cloud's own line and what to do, instead of "the Pulumi
engine failed ... run with --debug". Each error is worded as its cloud's provider words it."""

from __future__ import annotations

import pytest
from pulumi.automation import CommandResult
from pulumi.automation.errors import create_command_error

from llmcloud.stacks.automation import translate_command_error
from llmcloud.stacks.errors import ExitCode

TAKEN = {
    "gcp": ("gcp:compute/network:Network (llm-dev-net-vpc):",
            "error: googleapi: Error 409: The resource 'projects/p/global/networks/llm-dev' "
            "already exists, alreadyExists"),
    "aws-iam": ("aws:iam/role:Role (llm-dev-gateway-cloudwatch):",
                "error: creating IAM Role (llm-dev-cloudwatch): operation error IAM: "
                "CreateRole, https response error StatusCode: 409, EntityAlreadyExists: Role "
                "with name llm-dev-cloudwatch already exists."),
    "aws-logs": ("aws:cloudwatch/logGroup:LogGroup (llm-dev-gateway-authorizer):",
                 "error: creating CloudWatch Logs Log Group (/aws/lambda/llm-dev-authorizer): "
                 "operation error CloudWatch Logs: CreateLogGroup, "
                 "ResourceAlreadyExistsException: The specified log group already exists"),
    # (pulumi-azure-native#1722, #3688)
    "azure": ("azure-native:resources:ResourceGroup (llm-dev-rg):",
              "error: cannot create already existing resource "
              "'/subscriptions/s/resourceGroups/llm-dev'"),
}


@pytest.mark.parametrize("cloud", sorted(TAKEN))
def test_a_name_already_taken_says_so_with_the_clouds_line(cloud):
    header, line = TAKEN[cloud]
    stdout = ("Updating (dev):\n\nDiagnostics:\n"
              f"  {header}\n    {line}\n\n"
              "  pulumi:pulumi:Stack (llmcloud-dev):\n    error: update failed\n\n"
              "Resources:\n    + 3 created\n")
    error = translate_command_error(
        create_command_error(CommandResult(stdout=stdout, stderr="", code=255)), "dev")
    assert error.message == "a resource stack 'dev' names is already taken in the cloud"
    assert error.context == line[:400]
    assert "another region or llmcloud project" in error.hint
    assert "llmcloud init --stack NAME" in error.hint
    assert error.exit_code == ExitCode.ERROR
