"""On GCP the server's JSON log lines reach Cloud Logging as fields: the startup script hands
the container's log to the Ops Agent, configured to parse it, and falls back to Docker's
gcplogs driver (text) where the agent cannot be had."""

from __future__ import annotations

import json
import logging

import yaml

from llmcloud.inference_image.log_format import JsonFormatter
from llmcloud.providers.gcp.startup import OPS_AGENT_CONFIG, ops_agent_config
from tests.providers.test_boot_scripts_run import _gcp, run_script
from tests.providers.test_boot_scripts_run import pytestmark as needs_sandbox

INSTALLED = {"dpkg": 'case "$*" in *google-cloud-ops-agent*) exit 0 ;; esac; exit 1'}
MISSING = {"dpkg": "exit 1"}


def _log_options(run) -> list[str]:
    [docker_run] = run.called("docker", "run")
    return [docker_run[i + 1] for i, a in enumerate(docker_run)
            if a in ("--log-driver", "--log-opt")]


def _apply(config: dict, docker_line: str) -> dict:
    """What the configured processors make of one line of Docker's json-file log: each
    parse_json replaces the record with the JSON of its field (fluent-bit's parser filter,
    no Reserve_Data), modify_fields moves jsonPayload keys into LogEntry fields."""
    logging_ = config["logging"]
    [pipeline] = logging_["service"]["pipelines"].values()
    record, entry = {"message": docker_line}, {}
    for name in pipeline["processors"]:
        processor = logging_["processors"][name]
        if processor["type"] == "parse_json":
            try:
                record = json.loads(record[processor.get("field", "message")])
            except json.JSONDecodeError:
                pass  # the parser leaves a line it cannot parse as it was
        elif processor["type"] == "modify_fields":
            for target, how in processor["fields"].items():
                value = record.pop(how["move_from"].removeprefix("jsonPayload."), None)
                if target.startswith("jsonPayload."):
                    record[target.removeprefix("jsonPayload.")] = value
                elif value is not None:
                    entry[target] = value
        else:
            raise AssertionError(f"unexpected processor {processor['type']}")
    return {**entry, "jsonPayload": record}


def test_the_agent_parses_the_servers_json_lines_into_fields():
    config = yaml.safe_load(ops_agent_config())
    receivers = config["logging"]["receivers"]
    [receiver] = receivers.values()
    assert receiver == {"type": "files",
                        "include_paths": ["/var/lib/docker/containers/*/*-json.log"]}
    record = logging.LogRecord("llmcloud.requests", logging.WARNING, __file__, 1,
                               "request done", None, None)
    record.fields = {"request_id": "req-1", "prompt_tokens": 12, "ttft_s": 0.25,
                     "trace_id": "abc"}
    line = JsonFormatter().format(record)
    docker_line = json.dumps({"log": line + "\n", "stream": "stderr",
                              "time": "2026-01-01T00:00:00.000000001Z"})
    entry = _apply(config, docker_line)
    assert entry["severity"] == "WARNING"  # the server's key, not the agent's default
    payload = entry["jsonPayload"]
    assert payload["request_id"] == "req-1" and payload["prompt_tokens"] == 12
    assert payload["ttft_s"] == 0.25 and payload["logger"] == "llmcloud.requests"
    # a line that is not JSON (the text format, a crash before logging is set up) stays
    # text in jsonPayload.message, where gcplogs puts it too
    text = json.dumps({"log": "Traceback (most recent call last):\n", "stream": "stderr",
                       "time": "2026-01-01T00:00:00Z"})
    assert _apply(config, text) == {"jsonPayload": {
        "message": "Traceback (most recent call last):\n", "stream": "stderr",
        "time": "2026-01-01T00:00:00Z"}}
    # the agent's own host metrics (billed) stay off; the built-in syslog pipeline stays
    assert config["metrics"]["service"]["pipelines"]["default_pipeline"]["receivers"] == []
    assert "default_pipeline" not in config["logging"]["service"]["pipelines"]


@needs_sandbox
def test_with_the_agent_installed_the_container_logs_to_a_file_it_reads(tmp_path):
    run = run_script(_gcp(), tmp_path, INSTALLED)
    assert run.rc == 0, run.out
    assert run.written(OPS_AGENT_CONFIG).read_text() == ops_agent_config()
    assert run.called("systemctl", "restart", "google-cloud-ops-agent")
    assert _log_options(run)[0] == "json-file"
    assert "max-size=50m" in _log_options(run)  # bounded on the boot disk
    assert not [c for c in run.called("curl") if "dl.google.com" in " ".join(c)]


@needs_sandbox
def test_a_missing_agent_is_installed_with_googles_installer(tmp_path):
    # the stub installer "installs" the agent: the next dpkg query finds it
    curl = ('for a in "$@"; do [ "$prev" = -o ] && out=$a; prev=$a; done; '
            'case "$*" in *add-google-cloud-ops-agent-repo.sh*) '
            'printf \'echo "installer $*" >> "%s/installed"\\n\' "$STATE" > "$out" ;; esac')
    dpkg = '[ -e "$STATE/installed" ]'
    run = run_script(_gcp(), tmp_path, {"curl": curl, "dpkg": dpkg})
    assert run.rc == 0, run.out
    assert (tmp_path / "state" / "installed").read_text() == "installer --also-install\n"
    assert _log_options(run)[0] == "json-file"


@needs_sandbox
def test_without_the_agent_the_server_still_logs_through_gcplogs(tmp_path):
    # no installer (the download fails): the boot goes on, and every line still ships
    run = run_script(_gcp(), tmp_path, MISSING)
    assert run.rc == 0, run.out
    assert _log_options(run) == ["gcplogs"]
    assert "no Ops Agent" in run.out
    assert len(run.called("docker", "run")) == 1


@needs_sandbox
def test_an_agent_that_does_not_start_leaves_the_server_on_gcplogs(tmp_path):
    systemctl = 'case "$*" in *google-cloud-ops-agent*) exit 1 ;; esac'
    run = run_script(_gcp(), tmp_path, {**INSTALLED, "systemctl": systemctl})
    assert run.rc == 0, run.out
    assert _log_options(run) == ["gcplogs"]
