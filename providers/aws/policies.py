"""IAM and resource policy documents, as plain dicts: what each principal may do, and no more."""

from __future__ import annotations

from typing import Any

from llmcloud.providers.aws.endpoint_config import INSTANCE_METRICS_NAMESPACE
from llmcloud.providers.aws.naming import model_key_prefix, model_prefix

Doc = dict[str, Any]


def _doc(*statements: Doc) -> Doc:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def deny_insecure_transport(bucket_arn: str) -> Doc:
    """The statement that refuses every request to a bucket not made over TLS."""
    return {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [bucket_arn, f"{bucket_arn}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def model_bucket_policy(bucket_arn: str) -> Doc:
    """The model bucket's policy: TLS only (access itself is granted by IAM roles)."""
    return _doc(deny_insecure_transport(bucket_arn))


#: Regions opened before August 2022: their load balancers deliver access logs as an ELB
#: account of the region's own. Regions opened since have no such account (looking it up
#: fails) and deliver as the service principal `logdelivery.elasticloadbalancing...`.
ELB_ACCOUNT_REGIONS = frozenset({
    "us-east-1", "us-east-2", "us-west-1", "us-west-2", "af-south-1", "ap-east-1",
    "ap-south-1", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-southeast-1",
    "ap-southeast-2", "ap-southeast-3", "ca-central-1", "eu-central-1", "eu-west-1",
    "eu-west-2", "eu-west-3", "eu-south-1", "eu-north-1", "me-south-1", "sa-east-1",
    "us-gov-east-1", "us-gov-west-1", "cn-north-1", "cn-northwest-1",
})
ELB_LOG_DELIVERY = "logdelivery.elasticloadbalancing.amazonaws.com"


def log_bucket_policy(bucket_arn: str, account_id: str, elb_account_arn: str | None) -> Doc:
    """The log bucket's policy: TLS only; S3 access logs under `s3/`, ALB logs under `alb/`,
    VPC flow logs under `vpc/`, each writable only by its AWS log deliverer."""
    return _doc(
        deny_insecure_transport(bucket_arn),
        {
            "Sid": "S3ServerAccessLogs",
            "Effect": "Allow",
            "Principal": {"Service": "logging.s3.amazonaws.com"},
            "Action": "s3:PutObject",
            "Resource": f"{bucket_arn}/s3/*",
            "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
        },
        {
            "Sid": "LoadBalancerAccessLogs",
            "Effect": "Allow",
            "Principal": ({"AWS": elb_account_arn} if elb_account_arn
                          else {"Service": ELB_LOG_DELIVERY}),
            "Action": "s3:PutObject",
            "Resource": f"{bucket_arn}/alb/AWSLogs/{account_id}/*",
        },
        {
            "Sid": "VpcFlowLogsWrite",
            "Effect": "Allow",
            "Principal": {"Service": "delivery.logs.amazonaws.com"},
            "Action": "s3:PutObject",
            "Resource": f"{bucket_arn}/vpc/AWSLogs/{account_id}/*",
            "Condition": {"StringEquals": {"aws:SourceAccount": account_id,
                                           "s3:x-amz-acl": "bucket-owner-full-control"}},
        },
        {
            "Sid": "VpcFlowLogsAclCheck",
            "Effect": "Allow",
            "Principal": {"Service": "delivery.logs.amazonaws.com"},
            "Action": "s3:GetBucketAcl",
            "Resource": bucket_arn,
            "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
        },
    )


def server_policy(
    *,
    bucket_arn: str,
    model_name: str,
    store_key_arn: str,
    repository_arn: str,
    log_group_arn: str,
    region: str,
    metric_namespace: str,
) -> Doc:
    """What a GPU server may do: read its model's prefix, pull its image, write its logs and
    in-flight metric, read its parameters. Resources are named; no action is a wildcard."""
    prefix = model_prefix(model_name)
    return _doc(
        {"Sid": "ReadModel", "Effect": "Allow", "Action": "s3:GetObject",
         "Resource": f"{bucket_arn}/{prefix}*"},
        {"Sid": "ListModel", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket_arn,
         "Condition": {"StringLike": {"s3:prefix": [f"{prefix}*"]}}},
        {"Sid": "DecryptModel", "Effect": "Allow", "Action": "kms:Decrypt",
         "Resource": store_key_arn,
         "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}}},
        {"Sid": "PullImage", "Effect": "Allow",
         "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
                    "ecr:BatchCheckLayerAvailability"],
         "Resource": repository_arn},
        # ECR's login token is account-wide by design: this action takes no resource ARN
        {"Sid": "RegistryLogin", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken",
         "Resource": "*"},
        {"Sid": "WriteLogs", "Effect": "Allow",
         "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": f"{log_group_arn}:*"},
        # PutMetricData takes no resource ARN; the condition pins it to llmcloud's namespace
        {"Sid": "PublishInFlight", "Effect": "Allow", "Action": "cloudwatch:PutMetricData",
         "Resource": "*",
         "Condition": {"StringEquals": {"cloudwatch:namespace": metric_namespace}}},
    )


def sagemaker_execution_policy(
    *,
    bucket_arn: str,
    model_name: str,
    version: str,
    store_key_arn: str,
    repository_arns: list[str],
    log_group_arn: str,
    region: str,
) -> Doc:
    """What SageMaker may do for one model version: read that version's prefix (it mounts it
    at /opt/ml/model), pull the image, write the endpoint's logs and its instances' metrics.
    Nothing else."""
    prefix = model_key_prefix(model_name, version)
    return _doc(
        {"Sid": "ReadModelVersion", "Effect": "Allow", "Action": "s3:GetObject",
         "Resource": f"{bucket_arn}/{prefix}*"},
        {"Sid": "ListModelVersion", "Effect": "Allow", "Action": "s3:ListBucket",
         "Resource": bucket_arn, "Condition": {"StringLike": {"s3:prefix": [f"{prefix}*"]}}},
        {"Sid": "DecryptModel", "Effect": "Allow", "Action": "kms:Decrypt",
         "Resource": store_key_arn,
         "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}}},
        {"Sid": "PullImage", "Effect": "Allow",
         "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
                    "ecr:BatchCheckLayerAvailability"],
         "Resource": sorted(set(repository_arns))},
        # ECR's login token is account-wide by design: this action takes no resource ARN
        {"Sid": "RegistryLogin", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken",
         "Resource": "*"},
        {"Sid": "WriteLogs", "Effect": "Allow",
         "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
         "Resource": f"{log_group_arn}:*"},
        # SageMaker's agent on each instance publishes CPU/GPU/memory/disk use as this role;
        # PutMetricData takes no resource ARN, so the condition pins it to that namespace
        {"Sid": "PublishInstanceMetrics", "Effect": "Allow",
         "Action": "cloudwatch:PutMetricData", "Resource": "*",
         "Condition": {"StringEquals": {"cloudwatch:namespace": INSTANCE_METRICS_NAMESPACE}}},
    )


def invoke_endpoint_policy(endpoint_arn: str) -> Doc:
    """What API Gateway's integration role may do: invoke one SageMaker endpoint."""
    return _doc({"Sid": "InvokeEndpoint", "Effect": "Allow",
                 "Action": "sagemaker:InvokeEndpoint", "Resource": endpoint_arn})


def assume_role_policy(service: str, account_id: str | None = None) -> Doc:
    """The trust policy that lets an AWS service (`ec2.amazonaws.com`) assume a role; with
    `account_id`, only on behalf of that account (confused-deputy guard)."""
    statement: Doc = {"Effect": "Allow", "Principal": {"Service": service},
                      "Action": "sts:AssumeRole"}
    if account_id:
        statement["Condition"] = {"StringEquals": {"aws:SourceAccount": account_id}}
    return _doc(statement)


def key_policy(account_id: str, region: str, services: tuple[str, ...] = ()) -> Doc:
    """A KMS key policy: the account administers it through IAM; `services` (e.g. `logs`,
    `cloudwatch`) may use it to encrypt for this account only."""
    statements: list[Doc] = [{
        "Sid": "AccountAdministers", "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"}, "Action": "kms:*",
        "Resource": "*",
    }]
    for service in services:
        if service == "logs":
            principal = f"logs.{region}.amazonaws.com"
            condition = {"ArnLike": {"kms:EncryptionContext:aws:logs:arn":
                                     f"arn:aws:logs:{region}:{account_id}:*"}}
        else:
            principal = f"{service}.amazonaws.com"
            condition = {"StringEquals": {"aws:SourceAccount": account_id}}
        statements.append({
            "Sid": f"Use{service.title()}", "Effect": "Allow",
            "Principal": {"Service": principal},
            "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*",
                       "kms:DescribeKey"],
            "Resource": "*",
            "Condition": condition,
        })
    return _doc(*statements)
