"""On Azure the server's JSON lines land as text in Syslog's SyslogMessage: the workspace
holds a function that gives their fields as typed columns."""

from __future__ import annotations

import re

from llmcloud.providers.azure.monitoring import SERVER_LOG_FIELDS, server_log_query
from tests.providers.azure.helpers import WORKSPACE, custom_data, declared, one

SAVED_SEARCH = "azure-native:operationalinsights:SavedSearch"


def test_the_workspace_has_a_function_over_the_servers_json_lines():
    resources, _ = declared()
    function = one(resources, SAVED_SEARCH).inputs
    workspace = one(resources, WORKSPACE)
    assert function["functionAlias"] == "LlmcloudServerLog"
    assert function["workspaceName"] == workspace.inputs["workspaceName"]
    assert function["resourceGroupName"] == workspace.inputs["resourceGroupName"]
    query = function["query"]
    assert query == server_log_query()
    # it reads the lines under the tag the servers' container logs with
    tag = re.search(r"--log-opt tag=(\S+)", custom_data(resources)).group(1)
    assert f'| where ProcessName == "{tag}"' in query
    assert "parse_json(SyslogMessage)" in query


def test_the_function_types_every_field_a_request_line_carries():
    names = {name for name, _ in SERVER_LOG_FIELDS}
    assert {"request_id", "client_request_id", "trace_id", "finish", "prompt_tokens",
            "completion_tokens", "ttft_s", "total_s", "queue_s", "status"} <= names
    query = server_log_query("t")
    assert "['prompt_tokens'] = toint(entry['prompt_tokens'])" in query
    assert "['ttft_s'] = todouble(entry['ttft_s'])" in query
    # a line that is not JSON (a crash before logging is set up) keeps its text
    assert "['message'] = coalesce(tostring(entry['message']), SyslogMessage)" in query
