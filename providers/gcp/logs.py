"""A GCP stack's servers' log: Cloud Logging's entries of the instance group's VMs.

The Ops Agent (startup.py) writes the server's lines to the log named after its receiver,
`llmcloud_server`; where the agent could not start, Docker's gcplogs driver wrote them to
`gcplogs-docker-driver`. Both are read, through `entries:list`, newest first.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from llmcloud.providers.logs import LogLine, holds, iso_time, reaching
from llmcloud.stacks.errors import CredentialsError

ENTRIES_LIST = "https://logging.googleapis.com/v2/entries:list"
#: the log Docker's gcplogs driver writes (its fallback when the Ops Agent is not running)
GCPLOGS_LOG = "gcplogs-docker-driver"
#: the label the Ops Agent gives each entry: the VM's name
VM_NAME_LABEL = "compute.googleapis.com/resource_name"
#: the most entries one `entries:list` page holds (Google refuses more than 1000)
PAGE_SIZE = 1000
#: the most pages one read asks for: with --grep, lines that hold it may be few
MAX_PAGES = 20
LOGIN = "gcloud auth application-default login"


@dataclass
class CloudLogging:
    """`entries:list` over the stack's project, for its instance group's VMs."""

    session: Any
    project: str
    group: str

    @property
    def where(self) -> str:
        return f"Cloud Logging (project {self.project}, the VMs of {self.group})"

    @classmethod
    def of(cls, provider: Any, ctx: Any, outputs: Mapping[str, Any]) -> CloudLogging:
        from google.auth.exceptions import GoogleAuthError

        from llmcloud.providers.gcp.naming import resource_name

        try:
            session, project = provider._google(ctx)
        except GoogleAuthError as exc:  # no application default credentials
            raise CredentialsError("no usable Google credentials",
                                   context=f"{type(exc).__name__}: {exc}", hint=LOGIN) from None
        # (a stack of the first `up`, registry and store only, has no group yet)
        group = str(outputs.get("instance_group") or resource_name(ctx.stack, "gpu"))
        return cls(session, project, group)

    def query(self, since: datetime) -> str:
        """The Logging query language filter for the servers' lines from `since` on."""
        from llmcloud.providers.gcp.startup import SERVER_LOG

        # the group names its VMs `<group>-<4 characters>` (its base instance name)
        vms = f'"^{self.group}-[a-z0-9]+$"'
        return (f'resource.type="gce_instance" AND '
                f'(log_id("{SERVER_LOG}") OR log_id("{GCPLOGS_LOG}")) AND '
                f'(labels."{VM_NAME_LABEL}"=~{vms} OR jsonPayload.instance.name=~{vms}) AND '
                f'timestamp>="{iso_time(since)}"')

    def read(self, since: datetime, limit: int, grep: str | None) -> list[LogLine]:
        body: dict[str, Any] = {"resourceNames": [f"projects/{self.project}"],
                                "filter": self.query(since), "orderBy": "timestamp desc",
                                "pageSize": min(limit, PAGE_SIZE)}
        found: list[LogLine] = []
        for _ in range(MAX_PAGES):
            answer = self._post(body)
            found += [line for line in map(_line, answer.get("entries", ()))
                      if line is not None and holds(line, grep)]
            token = answer.get("nextPageToken")
            if len(found) >= limit or not token:
                break
            body["pageToken"] = token
        return found[:limit][::-1]

    def _post(self, body: Mapping[str, Any]) -> dict[str, Any]:
        from google.auth.exceptions import RefreshError

        from llmcloud.providers.api_answers import message, raise_for

        try:
            with reaching("Cloud Logging", "the servers' log entries"):
                response = self.session.post(ENTRIES_LIST, json=body, timeout=30)
        except RefreshError as exc:  # the session's token refused (expired, revoked)
            raise CredentialsError("Google refused the credentials", context=str(exc),
                                   hint=LOGIN) from None
        if response.status_code in (401, 403):
            raise CredentialsError(
                f"Cloud Logging refused to list the servers' log entries "
                f"(HTTP {response.status_code})",
                context=f"{message(response)} (it needs roles/logging.viewer on project "
                        f"{self.project})", hint=LOGIN)
        raise_for(response, "Cloud Logging", "listing the servers' log entries",
                  hint="run it again; llmcloud --debug logs shows more")
        return response.json()


def _line(entry: Mapping[str, Any]) -> LogLine | None:
    from llmcloud.providers.api_answers import api_time

    when = api_time(entry.get("timestamp"))
    if when is None:
        return None
    payload = entry.get("jsonPayload")
    if isinstance(payload, Mapping):
        instance = payload.get("instance")
        server = (entry.get("labels", {}).get(VM_NAME_LABEL)
                  or (instance.get("name") if isinstance(instance, Mapping) else None))
        text = payload.get("message", payload.get("data"))
        if not isinstance(text, str):  # (the agent parsed the line into fields)
            text = json.dumps(dict(payload))
    else:
        server = entry.get("labels", {}).get(VM_NAME_LABEL)
        text = str(entry.get("textPayload", ""))
    server = server or entry.get("resource", {}).get("labels", {}).get("instance_id", "")
    return LogLine(when, str(server), text.rstrip("\n"))
