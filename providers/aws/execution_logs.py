"""API Gateway's execution-log group, given the stack's retention and KMS key around the
Pulumi program.

API Gateway writes a stage's execution logs to a group it names itself,
`API-Gateway-Execution-Logs_{rest-api-id}/{stage}`, and makes it itself, never expiring and
with no key (docs.aws.amazon.com/apigateway/latest/developerguide/
rest-api-execution-logging.html); it writes into the group of that name when one exists.
The program cannot declare it: on every stack where API Gateway made it already, creating it
fails (`ResourceAlreadyExistsException`), and importing it needs identical inputs. So after
each `up` the group is made (or found) and given the stack's retention and key here, and
after `destroy` it is deleted with the rest of the stack.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

#: the stack output that says what the group must be: its name, the stack's log key and
#: retention (`gateway.py`)
OUTPUT = "execution_log_group"
PREFIX = "API-Gateway-Execution-Logs_"


def group_name(rest_api_id: str, stage: str) -> str:
    """The group API Gateway writes `rest_api_id`'s `stage` execution logs to."""
    return f"{PREFIX}{rest_api_id}/{stage}"


def wanted(outputs: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """What the stack's outputs say the group must be; None for a stack without an API
    (a first `up`: registry and store only)."""
    group = outputs.get(OUTPUT)
    return group if isinstance(group, Mapping) and group.get("name") else None


def deployed_name(outputs: Mapping[str, Any]) -> str | None:
    """The group of a deployed stack: from its output, or, for a stack last updated before
    there was one, from its endpoint (`https://{rest-api-id}.execute-api.../{stage}`)."""
    group = wanted(outputs)
    if group:
        return str(group["name"])
    url = urlparse(str(outputs.get("endpoint_url") or ""))
    api, _, rest = (url.hostname or "").partition(".")
    stage = url.path.strip("/").split("/")[0]
    return group_name(api, stage) if api and rest.startswith("execute-api.") and stage \
        else None


def keep(client: Any, group: Mapping[str, Any], tags: Mapping[str, str]) -> str | None:
    """Make sure the group `group` names exists with its key and retention, with CloudWatch
    Logs' `client`: created with both (and `tags`) when missing, else given what it lacks;
    a group already right is left untouched. Returns None when it is right now, else a
    warning naming the permission AWS refused and the command that finishes the job."""
    from botocore.exceptions import BotoCoreError, ClientError

    name, key = str(group["name"]), str(group["kms_key_arn"])
    days = int(group["retention_days"])
    left: list[_Fix] = [_Fix("logs:DescribeLogGroups", "", lambda: None)]
    try:
        found = _describe(client, name)
        if found is None:
            # creating it with tags needs logs:TagResource (or the older logs:TagLogGroup)
            # as well (CreateLogGroup API reference, `tags`)
            create = _Fix("logs:CreateLogGroup, logs:TagResource",
                          _command("create-log-group", name, "--kms-key-id", key),
                          lambda: client.create_log_group(logGroupName=name, kmsKeyId=key,
                                                          tags=dict(tags)))
            left = [create, *_fixes(client, name, {"kmsKeyId": key}, key, days)]
            try:
                create.call()
            except ClientError as exc:
                if _code(exc) != "ResourceAlreadyExistsException":
                    raise
                # API Gateway made it in between: give it what it lacks
                found = _describe(client, name) or {}
            else:
                found = {"kmsKeyId": key}
        fixes = _fixes(client, name, found, key, days)
        for index, fix in enumerate(fixes):
            left = fixes[index:]
            fix.call()
    except ClientError as exc:
        message = exc.response.get("Error", {}).get("Message", "")
        return _warning(name, left, f"AWS refused {left[0].permission}: {_code(exc)}: "
                                    f"{message}".rstrip(": "))
    except BotoCoreError as exc:
        return _warning(name, left, f"AWS could not be reached: {exc}")
    return None


@dataclass(frozen=True)
class _Fix:
    """One call that brings the group nearer to what it must be."""

    permission: str
    #: the AWS CLI's same call, for the warning when it is refused
    command: str
    call: Callable[[], Any]


def _fixes(client: Any, name: str, found: Mapping[str, Any], key: str,
           days: int) -> list[_Fix]:
    """The calls that give the group `found` the retention and key it lacks."""
    fixes = []
    if found.get("retentionInDays") != days:
        fixes.append(_Fix("logs:PutRetentionPolicy", _command(
            "put-retention-policy", name, "--retention-in-days", str(days)),
            lambda: client.put_retention_policy(logGroupName=name, retentionInDays=days)))
    if found.get("kmsKeyId") != key:
        fixes.append(_Fix("logs:AssociateKmsKey", _command(
            "associate-kms-key", name, "--kms-key-id", key),
            lambda: client.associate_kms_key(logGroupName=name, kmsKeyId=key)))
    return fixes


def delete(client: Any, name: str) -> tuple[bool, str | None]:
    """Delete the group `name` (it held the stack's logs, in the stack's key). Returns
    whether it was deleted, and a warning when AWS refused it; a group API Gateway never
    made is nothing to delete."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client.delete_log_group(logGroupName=name)
    except ClientError as exc:
        if _code(exc) == "ResourceNotFoundException":
            return False, None
        reason = (f"AWS refused logs:DeleteLogGroup: {_code(exc)}: "
                  f"{exc.response.get('Error', {}).get('Message', '')}").rstrip(": ")
    except BotoCoreError as exc:
        reason = f"AWS could not be reached: {exc}"
    else:
        return True, None
    return False, (f"warning: API Gateway's execution-log group {name} was left behind "
                   f"({reason}). Delete it with: {_command('delete-log-group', name)}")


def _describe(client: Any, name: str) -> dict[str, Any] | None:
    """The group named `name` as DescribeLogGroups shows it, or None."""
    pages = client.get_paginator("describe_log_groups").paginate(logGroupNamePrefix=name)
    return next((g for page in pages for g in page.get("logGroups", ())
                 if g.get("logGroupName") == name), None)


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", "error"))


def _command(verb: str, name: str, *args: str) -> str:
    return " ".join(["aws logs", verb, "--log-group-name", shlex.quote(name),
                     *map(shlex.quote, args)])


def _warning(name: str, left: list[_Fix], reason: str) -> str:
    permissions = ", ".join(fix.permission for fix in left)
    commands = " && ".join(fix.command for fix in left if fix.command)
    fix = (f"Give these credentials {permissions} on it and run up again"
           + (f", or run: {commands}" if commands else ""))
    return (f"warning: API Gateway's execution-log group {name} may lack the stack's "
            f"retention and KMS key ({reason}); the deployment itself succeeded. {fix}")
