"""`image push` with docker on a machine whose docker keeps logins in a credential store.

The fake docker below follows docker/cli's rules for where a login goes
(cli/config/config.go `LoadDefaultConfigFile`, cli/config/configfile/file.go
`GetCredentialsStore`): the registry's `credHelpers` entry, else `credsStore`, else, when
the config file names no login, store or helper at all, the platform's default store when
its helper is on PATH (`DetectDefaultStore`); otherwise the config file itself. A helper
gets `store` / `get` with JSON on stdin, as docker-credential-helpers do.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import pytest

from llmcloud.providers import image_builder as ib

REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
IMAGE = f"{REGISTRY}/llm-dev/m-server:1"
TOKEN = "ecr-token-s3cret"

FAKE_DOCKER = '''#!{python}
import base64, json, os, shutil, subprocess, sys
from pathlib import Path

args = sys.argv[1:]
folder = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
if args[:1] == ["--config"]:
    folder, args = Path(args[1]), args[2:]
config = folder / "config.json"
settings = json.loads(config.read_text()) if config.is_file() else {{}}
if not (settings.get("credsStore") or settings.get("credHelpers") or settings.get("auths")):
    if shutil.which("docker-credential-secretservice"):  # DetectDefaultStore on Linux
        settings["credsStore"] = "secretservice"


def helper_for(registry):
    return (settings.get("credHelpers") or {{}}).get(registry) or settings.get("credsStore")


if args[0] == "login":
    registry, user = args[1], args[args.index("--username") + 1]
    secret = sys.stdin.read()
    helper = helper_for(registry)
    if helper:
        done = subprocess.run(["docker-credential-" + helper, "store"], text=True,
                              capture_output=True, input=json.dumps(
                                  {{"ServerURL": registry, "Username": user, "Secret": secret}}))
        if done.returncode != 0:
            print("Error saving credentials: error storing credentials - err: exit status 1, "
                  "out: `" + done.stdout.strip() + "`", file=sys.stderr)
            sys.exit(1)
    else:
        token = base64.b64encode(f"{{user}}:{{secret}}".encode()).decode()
        settings.setdefault("auths", {{}})[registry] = {{"auth": token}}
        settings.pop("credsStore", None)  # (a detected default store is not written)
        config.write_text(json.dumps(settings))
    print("Login Succeeded")
elif args[0] == "push":
    registry = args[1].split("/", 1)[0]
    helper = helper_for(registry)
    if helper:
        done = subprocess.run(["docker-credential-" + helper, "get"], text=True,
                              capture_output=True, input=registry)
        secret = json.loads(done.stdout)["Secret"] if done.returncode == 0 else ""
    else:
        auth = (settings.get("auths") or {{}}).get(registry, {{}}).get("auth", "")
        secret = base64.b64decode(auth).decode().partition(":")[2]
    if secret != os.environ["FAKE_DOCKER_EXPECT"]:
        print("denied: Your authorization token has expired.", file=sys.stderr)
        sys.exit(1)
    print("1: digest: sha256:" + "d" * 64 + " size: 856")
'''

#: a keychain helper (osxkeychain, desktop, secretservice, pass): what it stores stays
KEYCHAIN_HELPER = '''#!{python}
import json, os, sys
from pathlib import Path

keychain = Path(os.environ["FAKE_KEYCHAIN"])
entries = json.loads(keychain.read_text()) if keychain.is_file() else {{}}
if sys.argv[1] == "store":
    entry = json.loads(sys.stdin.read())
    entries[entry["ServerURL"]] = entry
    keychain.write_text(json.dumps(entries))
elif sys.argv[1] == "get":
    server = sys.stdin.read().strip()
    if server not in entries:
        print("credentials not found in native keychain")
        sys.exit(1)
    print(json.dumps(entries[server]))
'''

#: amazon-ecr-credential-helper: gets tokens itself, stores nothing (its issue #574)
ECR_HELPER = '''#!{python}
import sys
if sys.argv[1] in ("store", "erase"):
    print("not implemented")
    sys.exit(1)
print("no basic auth credentials")
sys.exit(1)
'''


def _script(path: Path, text: str) -> None:
    path.write_text(text.format(python=sys.executable))
    path.chmod(0o755)


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """A home with a docker config, a fake docker and credential helpers on PATH."""
    bin_dir, home = tmp_path / "bin", tmp_path / "home"
    bin_dir.mkdir()
    (home / ".docker").mkdir(parents=True)
    _script(bin_dir / "docker", FAKE_DOCKER)
    for name in ("desktop", "secretservice"):
        _script(bin_dir / f"docker-credential-{name}", KEYCHAIN_HELPER)
    _script(bin_dir / "docker-credential-ecr-login", ECR_HELPER)
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    monkeypatch.setenv("FAKE_KEYCHAIN", str(tmp_path / "keychain.json"))
    monkeypatch.setenv("FAKE_DOCKER_EXPECT", TOKEN)
    return tmp_path


def _user_config(machine: Path, settings: dict) -> None:
    (machine / "home" / ".docker" / "config.json").write_text(json.dumps(settings))


def _push() -> str:
    docker = ib.Builder("docker", str(Path(ib.shutil.which("docker"))))
    return ib.push_image(docker, IMAGE, username="AWS", password=TOKEN)


def _left_behind(machine: Path) -> str:
    return "".join(p.read_text(errors="ignore") for p in machine.rglob("*")
                   if p.is_file() and p.parent.name != "bin")


@pytest.mark.parametrize("settings", [
    {"credsStore": "desktop"},  # Docker Desktop writes this
    {},  # no store named: docker picks the platform's (secretservice here) by itself
], ids=["credsStore", "default-store"])
def test_the_push_token_never_lands_in_the_users_keychain(machine, settings):
    _user_config(machine, settings)
    assert _push() == "sha256:" + "d" * 64
    keychain = machine / "keychain.json"
    assert not keychain.exists() or REGISTRY not in json.loads(keychain.read_text())
    encoded = base64.b64encode(f"AWS:{TOKEN}".encode()).decode()
    left = _left_behind(machine)
    assert TOKEN not in left and encoded not in left


def test_a_push_works_where_the_registry_has_the_ecr_credential_helper(machine):
    # what amazon-ecr-credential-helper's README sets up; it refuses `docker login`'s store
    _user_config(machine, {"credsStore": "desktop",
                           "credHelpers": {REGISTRY: "ecr-login",
                                           "other.example.com": "desktop"}})
    assert _push() == "sha256:" + "d" * 64
    assert TOKEN not in _left_behind(machine)
