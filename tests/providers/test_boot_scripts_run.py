"""The servers' boot scripts run end to end in a sandbox: a private mount namespace whose
/etc, /usr/local and /var are overlays on folders of the test, stub executables first on PATH
(each records its arguments), and `env -i` with a temporary HOME."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from llmcloud.providers.aws.userdata import ServerLaunch as AwsLaunch
from llmcloud.providers.aws.userdata import render_user_data
from llmcloud.providers.azure.cloud_init import ServerLaunch as AzureLaunch
from llmcloud.providers.azure.cloud_init import render_custom_data
from llmcloud.providers.gcp.startup import ServerLaunch as GcpLaunch
from llmcloud.providers.gcp.startup import render_startup_script

AWS_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/llm-dev/m@sha256:" + "a" * 64
GCP_IMAGE = "us-central1-docker.pkg.dev/p/r/server@sha256:" + "a" * 64
AZURE_IMAGE = "llmdev1.azurecr.io/m-server@sha256:" + "a" * 64
#: the uid the inference image runs as (inference_image/Dockerfile)
IMAGE_UID = 10001
#: what the stubs hand out as credentials: none may reach a log
SECRETS = ("imds-token", "ecr-password", "arm-token", "acr-token")

OVERLAID = ("/etc", "/usr/local", "/var")
RECORDED = ("docker", "aws", "gcloud", "az", "curl", "nvidia-smi", "systemctl", "useradd",
            "chown", "sleep", "iptables")
DEFAULT_STUBS = {
    "curl": """case "$*" in
  *latest/api/token*) echo imds-token ;;
  *meta-data/instance-id*) echo i-0123 ;;
  *compute/name*) echo vm1 ;;
  *oauth2/token*) echo '{"access_token": "arm-token"}' ;;
  *oauth2/exchange*) echo '{"refresh_token": "acr-token"}' ;;
esac""",
    "aws": """case "$*" in *get-login-password*) echo ecr-password ;; esac""",
    "gcloud": """case "$*" in
  *"secrets versions access"*) printf '# k\\nsha256:%064d\\n' 0 ;;
esac""",
    "docker": """case "$1" in login) cat > /dev/null ;; esac""",
}


def _sandbox_works() -> bool:
    if not all(shutil.which(c) for c in ("bash", "unshare", "timeout", "env")):
        return False
    try:
        return subprocess.run(["unshare", "-rm", "true"], capture_output=True,
                              timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


pytestmark = pytest.mark.skipif(not _sandbox_works(),
                                reason="needs bash and a working `unshare -rm`")


@dataclass
class Run:
    rc: int
    calls: list[list[str]]
    out: str
    verify: str
    tmp: Path

    def written(self, path: str) -> Path:
        """Where a file the script wrote at an absolute path landed."""
        for i, folder in enumerate(OVERLAID):
            if path.startswith(folder + "/"):
                return self.tmp / f"upper{i}" / path[len(folder) + 1:]
        raise ValueError(path)

    def called(self, *prefix: str) -> list[list[str]]:
        return [c for c in self.calls if c[:len(prefix)] == list(prefix)]


def run_script(script: str, tmp: Path, stubs: dict[str, str] | None = None, *,
               timeout: int = 20) -> Run:
    """Run `script` with bash in the sandbox; a later call with the same `tmp` sees what the
    earlier one wrote (a reboot). Stubs record `name args` in calls.log and then run their
    body from `stubs` (or DEFAULT_STUBS); $STATE is a folder they may keep state in."""
    bin_, home, state = tmp / "bin", tmp / "home", tmp / "state"
    for folder in (bin_, home, state):
        folder.mkdir(exist_ok=True)
    log = tmp / "calls.log"
    for name, body in ({n: "" for n in RECORDED} | DEFAULT_STUBS | (stubs or {})).items():
        stub = bin_ / name
        stub.write_text(f"#!/bin/bash\nSTATE={state}\n"
                        f"printf '%s\\n' \"{name} ${{*@Q}}\" >> {log}\n{body}\n")
        stub.chmod(0o755)
    (tmp / "boot.sh").write_text(script)
    mounts = []
    for i, folder in enumerate(OVERLAID):
        upper, work = tmp / f"upper{i}", tmp / f"work{i}"
        upper.mkdir(exist_ok=True)
        work.mkdir(exist_ok=True)
        mounts.append(f"mount -t overlay overlay -o lowerdir={folder},upperdir={upper},"
                      f"workdir={work} {folder}")
    verify = (f": > {tmp}/verify.log; for u in /etc/systemd/system/llmcloud-*.service; do "
              '[ -e "$u" ] || continue; '
              f'systemd-analyze verify "$u" >> {tmp}/verify.log 2>&1 '
              f'|| echo "FAILED $u" >> {tmp}/verify.log; done'
              if shutil.which("systemd-analyze") else f": > {tmp}/verify.log")
    inner = (" && ".join(mounts)
             + f" && env -i PATH={bin_}:/usr/bin:/bin HOME={home} timeout {timeout} "
             f"bash {tmp}/boot.sh > {tmp}/out.log 2>&1; echo $? > {tmp}/rc; {verify}")
    done = subprocess.run(["unshare", "-rm", "bash", "-c", inner], capture_output=True,
                          text=True, timeout=timeout + 60)
    if not (tmp / "rc").exists():  # the mounts failed, so the script never ran
        pytest.skip(f"no overlay mounts in a user namespace here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    rc = int((tmp / "rc").read_text())
    calls = [[c.split(" ", 1)[0], *shlex.split(c.split(" ", 1)[1] if " " in c else "")]
             for c in (log.read_text().splitlines() if log.exists() else [])]
    (tmp / "rc").unlink()
    log.unlink(missing_ok=True)
    return Run(rc=rc, calls=calls, out=(tmp / "out.log").read_text(),
               verify=(tmp / "verify.log").read_text(), tmp=tmp)


# -- the launches -------------------------------------------------------------------------

#: a model URI holding a space and a `$`: it must reach the server as one argument, as written
ODD_URI = "s3://b/models/my model/$HOME"


def _aws(**changes) -> str:
    return render_user_data(AwsLaunch(**{
        "region": "us-east-1", "image": AWS_IMAGE, "model_uri": ODD_URI, "model_version": "v7",
        "log_group": "/llmcloud/dev/server", "asg_name": "llm-dev-gpu", "port": 9000,
        "drain_timeout_seconds": 45, **changes}))


def _gcp(**changes) -> str:
    return render_startup_script(GcpLaunch(**{
        "project": "p", "image": GCP_IMAGE, "model_uri": ODD_URI, "model_version": "v7",
        "keys_secret": "llm-dev-api-keys", "port": 9000, "drain_timeout_seconds": 45,
        **changes}))


def _azure(**changes) -> str:
    return render_custom_data(AzureLaunch(**{
        "image": AZURE_IMAGE, "model_uri": ODD_URI, "model_version": "v7",
        "identity_client_id": "1234", "region": "eastus", "port": 9000,
        "drain_timeout_seconds": 45, **changes}))


RENDER = {"aws": _aws, "gcp": _gcp, "azure": _azure}


def _helper(script: str, name: str) -> str:
    """The script a boot script installs as /usr/local/bin/`name`."""
    return script.split(f"cat > /usr/local/bin/{name} <<'SCRIPT'\n", 1)[1].split(
        "\nSCRIPT\n", 1)[0]


def _after(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


# -- the whole boot ------------------------------------------------------------------------


@pytest.mark.parametrize("cloud", RENDER)
def test_the_boot_script_runs_the_server_on_the_gpus(tmp_path, cloud):
    run = run_script(RENDER[cloud](), tmp_path)
    assert run.rc == 0, run.out
    [docker_run] = run.called("docker", "run")
    assert _after(docker_run, "--restart") == "unless-stopped"
    assert _after(docker_run, "--gpus") == "all"
    assert _after(docker_run, "-p") == "9000:9000" and _after(docker_run, "--port") == "9000"
    assert _after(docker_run, "--stop-timeout") == "60"  # the drain (45 s) and a margin
    assert "/var/lib/llmcloud/models:/models" in docker_run
    assert _after(docker_run, "--model") == ODD_URI
    # the registry login comes before the pull, the pull before the run
    order = [c[1] for c in run.calls if c[0] == "docker"]
    assert order.index("pull") < order.index("run")
    assert "login" in order or run.called("gcloud", "auth", "configure-docker")
    assert "FAILED" not in run.verify, run.verify  # systemd-analyze verify takes every unit
    for secret in SECRETS:
        assert secret not in run.out


@pytest.mark.parametrize("cloud", RENDER)
def test_the_model_cache_is_writable_by_the_image_user(tmp_path, cloud):
    # the image runs as uid 10001: a root-owned 0755 cache would fail the first download
    run = run_script(RENDER[cloud](), tmp_path)
    assert run.rc == 0, run.out
    cache = run.written("/var/lib/llmcloud/models")
    chowned = any(c[-1] == "/var/lib/llmcloud/models" and c[1].startswith(f"{IMAGE_UID}")
                  for c in run.called("chown"))
    assert chowned or cache.stat().st_mode & 0o002, oct(cache.stat().st_mode)


def test_the_gcp_startup_retries_the_image_pull(tmp_path):
    # the service account's grant on the repository, or the network, may lag the first boot:
    # one failed pull must not end the startup script (GCP runs it again only at a reboot)
    docker = ('case "$1" in pull) [ -e "$STATE/pulled" ] || { touch "$STATE/pulled"; '
              'echo "denied" >&2; exit 1; } ;; esac')
    run = run_script(_gcp(), tmp_path, {"docker": docker})
    assert run.rc == 0, run.out
    assert len(run.called("docker", "pull")) == 2 and len(run.called("docker", "run")) == 1


def test_the_gcp_startup_runs_again_at_a_reboot(tmp_path):
    # GCP runs the startup script at every boot: the second run must replace the container
    docker = ('case "$1" in run) [ -e "$STATE/c" ] && { echo Conflict >&2; exit 125; }; '
              'touch "$STATE/c" ;; rm) rm -f "$STATE/c" ;; esac')
    assert run_script(_gcp(), tmp_path, {"docker": docker}).rc == 0
    again = run_script(_gcp(), tmp_path, {"docker": docker})
    assert again.rc == 0, again.out
    assert len(again.called("docker", "run")) == 1
    assert (again.written("/etc/llmcloud/api-keys").stat().st_mode & 0o777) == 0o444


# -- the services the boot installs --------------------------------------------------------

#: `sleep` that lets one round of a `while sleep` loop run, then ends it
ONE_ROUND = 'echo x >> "$STATE/slept"; [ "$(wc -l < "$STATE/slept")" -lt 2 ]'
DOWN_SERVER = """case "$*" in
  *127.0.0.1*) exit 7 ;;
  *instance/id*) echo 42 ;;
  *instance/zone*) echo projects/1/zones/us-central1-a ;;
  *token*) echo '{"access_token": "t"}' ;;
  *instance/compute*) echo '{"subscriptionId": "S", "resourceGroupName": "G", \
"vmScaleSetName": "V"}' ;;
esac"""


def _publisher(cloud: str) -> str:
    if cloud == "aws":
        exec_start = re.search(r"^ExecStart=(.*)$", _aws(), re.M).group(1)
        return "#!/bin/bash\n" + shlex.split(exec_start)[2] + "\n"
    return _helper(RENDER[cloud](), "llmcloud-metrics") + "\n"


@pytest.mark.parametrize("cloud", RENDER)
def test_the_publisher_skips_a_server_that_does_not_answer(tmp_path, cloud):
    # a server still loading its model, or crashed, holds no requests it could report: a 0
    # would pull the group's average down and scale it in while it cannot serve
    run = run_script(_publisher(cloud), tmp_path, {"curl": DOWN_SERVER, "sleep": ONE_ROUND})
    assert run.called("curl", "-sf", "http://127.0.0.1:9000/metrics")
    published = run.called("aws", "cloudwatch") + [c for c in run.called("curl")
                                                  if "POST" in c]
    assert not published, published


def test_the_azure_drain_waits_for_the_vm_name(tmp_path):
    # after a reboot the drain service starts before the network: a failed first look-up
    # of the VM's name must not leave it deaf to this VM's terminate notice for good
    events = ('{"Events": [{"EventId": "A", "EventType": "Terminate", '
              '"Resources": ["vm1"]}]}')
    curl = f"""case "$*" in
  *compute/name*) [ -e "$STATE/named" ] || {{ touch "$STATE/named"; exit 7; }}; echo vm1 ;;
  *"-X POST"*) ;;
  *scheduledevents*) echo '{events}' ;;
esac"""
    sleep = 'echo x >> "$STATE/slept"; [ "$(wc -l < "$STATE/slept")" -lt 5 ]'
    run = run_script(_helper(_azure(), "llmcloud-drain") + "\n", tmp_path,
                     {"curl": curl, "sleep": sleep})
    assert run.called("docker", "stop", "--time", "60", "llmcloud-server"), run.calls
    assert [c for c in run.called("curl") if "POST" in c]


def test_the_gcp_publisher_waits_for_the_metadata_server(tmp_path):
    # at boot the metadata server may fail a first look-up: the gauge must still reach
    # Cloud Monitoring under this instance's id and zone, not under empty ones
    curl = """case "$*" in
  *127.0.0.1*) echo 'llmcloud_requests_in_flight 3' ;;
  *instance/id*) [ -e "$STATE/asked" ] || { touch "$STATE/asked"; exit 7; }; echo 42 ;;
  *instance/zone*) echo projects/1/zones/us-central1-a ;;
  *token*) echo '{"access_token": "t"}' ;;
esac"""
    sleep = 'echo x >> "$STATE/slept"; [ "$(wc -l < "$STATE/slept")" -lt 3 ]'
    run = run_script(_publisher("gcp"), tmp_path, {"curl": curl, "sleep": sleep})
    [post] = [c for c in run.called("curl") if "POST" in c]
    body = _after(post, "-d")
    assert '"instance_id":"42"' in body and '"zone":"us-central1-a"' in body, body


def test_the_gcp_publisher_gives_up_on_a_silent_metadata_server(tmp_path):
    # a bounded wait, then an exit that systemd answers by starting it again
    curl = """case "$*" in *instance/*) exit 7 ;; esac"""
    run = run_script(_publisher("gcp"), tmp_path, {"curl": curl})
    assert run.rc == 1 and "no instance id" in run.out
    assert not [c for c in run.called("curl") if "POST" in c]
    assert 1 < len(run.called("sleep")) <= 60
