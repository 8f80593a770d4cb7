"""The AWS provider: a GPU Auto Scaling group behind an internal ALB and API Gateway."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmcloud.providers.cloud import CloudProvider
from llmcloud.providers.credentials import check_aws


class AwsProvider(CloudProvider):
    """Deploys the service on AWS with pulumi-aws."""

    name = "aws"
    extra = "aws"
    sdk_modules = ("pulumi_aws", "boto3")
    credentials_command = "aws configure"
    unsupported = {
        "up": "the AWS stack's components are not part of this build",
        "update": "the AWS stack's components are not part of this build",
        "preview": "the AWS stack's components are not part of this build",
        "plan": "the AWS stack's components are not part of this build",
        "promote": "rolling a new model version on the clouds is not part of this build",
        "rollback": "rolling a new model version on the clouds is not part of this build",
        "keys": "AWS API keys are managed by API Gateway usage plans in the stack",
        "model_upload": "uploads to the stack's bucket are not part of this build",
        "image_push": "pushes to the stack's registry are not part of this build",
        "console": "the console shows local stacks only in this build",
    }

    def defaults(self) -> dict[str, Any]:
        return {
            "region": "us-east-1",
            "compute": {"instance_type": "g6.xlarge", "gpus": 1},
        }

    def check_credentials(self, environ: Mapping[str, str]) -> None:
        check_aws(environ)
