"""An Azure stack's servers' log: the Syslog lines its scale set's agent ships to the
stack's Log Analytics workspace, read through the workspace's `LlmcloudServerLog` function
with the Log Analytics query API."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from llmcloud.providers.logs import LogLine, holds, iso_time, reaching
from llmcloud.stacks.errors import CredentialsError

#: the Log Analytics query API per cloud (Microsoft's "Access the Azure Monitor Log
#: Analytics API" pages; its token's audience is the same address)
QUERY_ENDPOINTS = {"public": "https://api.loganalytics.io",
                   "usgovernment": "https://api.loganalytics.us",
                   "china": "https://api.loganalytics.azure.cn"}
#: Microsoft.OperationalInsights/workspaces, for the workspace's id (`customerId`)
WORKSPACE_API = "2022-10-01"


@dataclass
class LogAnalytics:
    """KQL over `LlmcloudServerLog` in the stack's workspace."""

    arm: Any
    credential: Any
    endpoint: str
    workspace_path: str
    hint: str
    session: Any = None
    _workspace_id: str | None = None

    @property
    def where(self) -> str:
        return f"the Log Analytics workspace {self.workspace_path.rsplit('/', 1)[-1]}"

    @classmethod
    def of(cls, ctx: Any, outputs: Mapping[str, Any]) -> LogAnalytics:
        import requests

        from llmcloud.providers.azure import gpu_quota
        from llmcloud.providers.azure.arm import Arm
        from llmcloud.providers.azure.clouds import cloud_named, environment_name
        from llmcloud.providers.azure.naming import fitted, resource_group_name
        from llmcloud.providers.azure.sign_in import arm_method, caller_credential
        from llmcloud.providers.naming import base_name
        from llmcloud.stacks.errors import ConfigError

        subscription = gpu_quota.subscription_of(ctx.environ)
        if not subscription:
            raise ConfigError("the Azure subscription is not known",
                              hint="export ARM_SUBSCRIPTION_ID=..., or az account set "
                                   "--subscription ID")
        group = str(outputs.get("resource_group") or resource_group_name(ctx.stack))
        # (the workspace's name, as monitoring.py gives it)
        workspace = fitted(f"{base_name(ctx.stack)}-logs", "workspace")
        credential = caller_credential(ctx.environ)
        try:
            cloud = cloud_named(environment_name(ctx.environ)).name
        except ValueError:
            cloud = "public"
        return cls(
            arm=Arm(ctx.environ, credential), credential=credential,
            endpoint=QUERY_ENDPOINTS[cloud],
            workspace_path=f"/subscriptions/{subscription}/resourceGroups/{group}/providers/"
                           f"Microsoft.OperationalInsights/workspaces/{workspace}",
            hint=("check ARM_CLIENT_ID, ARM_TENANT_ID and the credential they sign in with"
                  if arm_method(ctx.environ) not in (None, "default") else "az login"),
            session=requests.Session())

    def query(self, since: datetime, limit: int, grep: str | None) -> str:
        """The KQL that reads the newest `limit` lines from `since` on."""
        from llmcloud.providers.azure.monitoring import SERVER_LOG_FUNCTION

        lines = [SERVER_LOG_FUNCTION, f"| where TimeGenerated >= datetime({iso_time(since)})"]
        if grep is not None:
            text = kql_string(grep)
            lines.append(f"| where message contains_cs {text} or Computer contains_cs {text}")
        lines += [f"| top {limit} by TimeGenerated desc",
                  "| project TimeGenerated, Computer, message"]
        return "\n".join(lines)

    def read(self, since: datetime, limit: int, grep: str | None) -> list[LogLine]:
        from llmcloud.providers.api_answers import api_time, message, raise_for
        from llmcloud.providers.azure.monitoring import SERVER_LOG_FUNCTION

        workspace = self.workspace_id()
        if workspace is None:
            return []  # no workspace yet: the first `up` makes only the registry and store
        headers = {"Authorization": f"Bearer {self._token()}"}
        with reaching("Log Analytics", "the servers' log"):
            response = self.session.post(
                f"{self.endpoint}/v1/workspaces/{workspace}/query",
                json={"query": self.query(since, limit, grep)}, timeout=60, headers=headers)
        if response.status_code in (401, 403):
            raise CredentialsError(f"Log Analytics refused the query (HTTP "
                                   f"{response.status_code})",
                                   context=f"{message(response)} (it needs Log Analytics "
                                           "Reader on the stack's workspace)",
                                   hint=self.hint)
        if response.status_code == 400 and SERVER_LOG_FUNCTION in response.text:
            return []  # the function is made with the servers' monitoring: none yet
        raise_for(response, "Log Analytics", "querying the servers' log",
                  hint="run it again; llmcloud --debug logs shows more")
        tables = response.json().get("tables") or [{}]
        columns = [c.get("name") for c in tables[0].get("columns", ())]
        found = []
        for row in tables[0].get("rows", ()):
            cell = dict(zip(columns, row, strict=False))
            when = api_time(cell.get("TimeGenerated"))
            if when is not None:
                found.append(LogLine(when, str(cell.get("Computer") or ""),
                                     str(cell.get("message") or "").rstrip("\n")))
        return [line for line in found if holds(line, grep)][::-1]  # (newest first)

    def workspace_id(self) -> str | None:
        """The workspace's id (its `customerId`, the query API's name for it); None while
        there is no workspace."""
        from llmcloud.providers.api_answers import raise_for

        if self._workspace_id is None:
            with reaching("Resource Manager", "the stack's workspace"):
                response = self.arm.request("GET", self.workspace_path,
                                            params={"api-version": WORKSPACE_API})
            if response.status_code == 404:
                return None
            if response.status_code in (401, 403):
                raise CredentialsError(f"Resource Manager refused to read the stack's "
                                       f"workspace (HTTP {response.status_code})",
                                       context=self.workspace_path, hint=self.hint)
            raise_for(response, "Resource Manager", "reading the stack's workspace",
                      hint="run it again; llmcloud --debug logs shows more")
            self._workspace_id = str(response.json()["properties"]["customerId"])
        return self._workspace_id

    def _token(self) -> str:
        from azure.core.exceptions import ClientAuthenticationError

        try:
            return self.credential.get_token(f"{self.endpoint}/.default").token
        except ClientAuthenticationError as exc:
            raise CredentialsError("Azure refused a token for Log Analytics",
                                   context=str(exc).splitlines()[0] if str(exc)
                                   else type(exc).__name__, hint=self.hint) from None


def kql_string(text: str) -> str:
    """`text` as a KQL string literal (double-quoted, backslash escapes)."""
    escaped = (text.replace("\\", "\\\\").replace('"', '\\"')
               .replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t"))
    return f'"{escaped}"'
