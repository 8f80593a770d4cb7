"""An AWS stack's servers' log: the CloudWatch Logs group its containers log to (Docker's
`awslogs` driver, one stream per instance; on SageMaker, one per endpoint instance)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from llmcloud.providers.logs import LogLine, newest
from llmcloud.stacks.errors import CredentialsError, DeploymentError

#: CloudWatch's answers that mean the caller's credentials were refused, not the request
REFUSED = frozenset({"UnrecognizedClientException", "InvalidClientTokenId",
                     "ExpiredTokenException", "ExpiredToken", "InvalidSignatureException",
                     "AccessDeniedException", "AccessDenied"})


@dataclass
class CloudWatchLogs:
    """`FilterLogEvents` over the stack's log group, every page of it."""

    client: Any
    group: str

    @property
    def where(self) -> str:
        return f"the CloudWatch Logs group {self.group}"

    @classmethod
    def of(cls, ctx: Any, outputs: Mapping[str, Any]) -> CloudWatchLogs:
        from llmcloud.providers.aws.naming import log_group_name

        # (a stack of the first `up`, registry and store only, has no group yet: its
        # name is the one the servers will log to, and it reads as no lines yet)
        group = str(outputs.get("log_group") or log_group_name(ctx.stack))
        return cls(logs_client(ctx.spec.region), group)

    def read(self, since: datetime, limit: int, grep: str | None) -> list[LogLine]:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        pages = self.client.get_paginator("filter_log_events").paginate(
            logGroupName=self.group, startTime=int(since.timestamp() * 1000))
        try:
            # oldest first, page after page: the newest `limit` are the last ones
            return newest((_line(event) for page in pages for event in page.get("events", ())),
                          limit, grep)
        except NoCredentialsError:
            raise _refused("no AWS credentials were found") from None
        except ClientError as exc:
            error = exc.response.get("Error", {})
            if error.get("Code") == "ResourceNotFoundException":
                return []  # no server has started yet: the group is made with the first
            if error.get("Code") in REFUSED:
                raise _refused(f"AWS refused the credentials: {error.get('Message')}") \
                    from None
            raise DeploymentError(f"CloudWatch Logs answered {error.get('Code')} reading "
                                  f"{self.group}", context=str(error.get("Message")),
                                  hint="run it again; llmcloud --debug logs shows more") \
                from None
        except BotoCoreError as exc:
            raise DeploymentError(f"could not read {self.group} from CloudWatch Logs",
                                  context=str(exc),
                                  hint="check this machine's network access to AWS") from None


def logs_client(region: str | None) -> Any:
    """boto3's CloudWatch Logs client in the stack's region (tests replace it)."""
    import boto3

    from llmcloud.providers.aws.provider import DEFAULT_REGION

    return boto3.client("logs", region_name=region or DEFAULT_REGION)


def _line(event: Mapping[str, Any]) -> LogLine:
    when = datetime.fromtimestamp(int(event["timestamp"]) / 1000, timezone.utc)
    return LogLine(when, str(event.get("logStreamName", "")),
                   str(event.get("message", "")).rstrip("\n"))


def _refused(message: str) -> CredentialsError:
    return CredentialsError(message, context="reading the servers' log needs "
                            "logs:FilterLogEvents on the stack's log group",
                            hint="aws configure (or aws sso login), then run it again")
