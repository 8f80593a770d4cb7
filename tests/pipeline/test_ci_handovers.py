"""The hand-overs of the CI examples (`examples/ci/`), checked from both sides: what a step
writes is what the next one reads, and what a runner must provide is set.

Found by following a release through the GitHub workflow: it never gave the Pulumi CLI a
backend (pulumi/actions only installs the CLI; with neither `PULUMI_ACCESS_TOKEN` nor
`PULUMI_BACKEND_URL`, every command that reads or changes a stack failed "not logged in"),
and its checkouts left `./model`'s Git LFS weights as pointer files, which `model upload`
would have uploaded as the model. The GitLab file named no Pulumi self-managed backend and
set nothing for the OIDC it mentioned."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from llmcloud.providers import image_builder as ib
from llmcloud.stacks.config import resolve_spec
from tests.cli.test_readme_first_deploy import FOLDERS, _parse
from tests.pipeline.test_ci_examples import _llmcloud_calls, _scripts

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "ci"
GITHUB = "github-actions.yml"
GITLAB = "gitlab-ci.yml"
#: what the Pulumi CLI logs in with when no one ran `pulumi login`: Pulumi Cloud's token, or
#: a self-managed backend (whose stacks' secrets need the passphrase they were made with)
BACKEND_VARIABLES = ("PULUMI_ACCESS_TOKEN", "PULUMI_BACKEND_URL")
#: the only llmcloud command of the examples that does not open a stack
NO_STACK = {("image", "build")}
DIGEST = "sha256:" + "ab" * 32
REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com/llm-staging"


def _load(name: str) -> dict:
    return yaml.safe_load((EXAMPLES / name).read_text())


def _github_steps():
    """(job name, job, step, the env the step's commands see) of the GitHub workflow."""
    workflow = _load(GITHUB)
    for name, job in workflow["jobs"].items():
        for step in job["steps"]:
            env = {**workflow.get("env", {}), **job.get("env", {}), **step.get("env", {})}
            yield name, job, step, env


@pytest.mark.parametrize("name", [GITHUB, GITLAB])
def test_every_llmcloud_call_of_the_examples_parses(name: str, tmp_path, monkeypatch) -> None:
    """As the README's (tests/cli/test_readme_commands.py): the real CLI parses each call,
    values and required arguments included, not only its option names."""
    monkeypatch.chdir(tmp_path)
    for folder in FOLDERS:  # `model upload` takes an existing folder
        (tmp_path / folder).mkdir()
    calls = [call for script in _scripts(_load(name)) for call in _llmcloud_calls(script)]
    assert len(calls) >= 10
    for call in calls:
        try:
            _parse(call)
        except Exception as error:  # the CLI's usage errors, an unknown command
            raise AssertionError(f"{name}: llmcloud {' '.join(call)}: {error}") from None


def test_every_github_step_that_opens_a_stack_can_reach_the_pulumi_backend() -> None:
    checked = 0
    for job_name, _, step, env in _github_steps():
        calls = _llmcloud_calls(step.get("run", ""))
        if not [call for call in calls if tuple(call[:2]) not in NO_STACK]:
            continue
        checked += 1
        given = [name for name in BACKEND_VARIABLES if env.get(name)]
        assert given, (f"{job_name}: `llmcloud {' '.join(calls[0])}` opens a stack, with "
                       f"neither {' nor '.join(BACKEND_VARIABLES)} set")
        if "PULUMI_ACCESS_TOKEN" in given:  # a credential: from the secrets, never the file
            assert re.fullmatch(r"\$\{\{ secrets\.\w+ \}\}", env["PULUMI_ACCESS_TOKEN"])
        else:
            assert env.get("PULUMI_CONFIG_PASSPHRASE") or env.get("PULUMI_CONFIG_PASSPHRASE_FILE")
    assert checked >= 6


@pytest.mark.parametrize("name", [GITHUB, GITLAB])
def test_each_example_says_how_its_runner_reaches_the_pulumi_backend(name: str) -> None:
    # a GitLab file sets no secrets itself: its comment lists the CI/CD variables to add
    text = (EXAMPLES / name).read_text()
    for variable in (*BACKEND_VARIABLES, "PULUMI_CONFIG_PASSPHRASE"):
        assert variable in text, f"{name} never says to set {variable}"


def test_github_jobs_that_upload_the_checkouts_model_fetch_its_lfs_files() -> None:
    # actions/checkout leaves Git LFS files as pointers unless `lfs: true`
    uploads = 0
    for job_name, job in _load(GITHUB)["jobs"].items():
        calls = [call for script in _scripts(job) for call in _llmcloud_calls(script)]
        if not any(call[:2] == ["model", "upload"] and call[2].startswith("./")
                   for call in calls):
            continue
        uploads += 1
        checkout, = [step for step in job["steps"]
                     if step.get("uses", "").startswith("actions/checkout@")]
        assert (checkout.get("with") or {}).get("lfs") is True, \
            f"{job_name} uploads ./model from a checkout without its LFS files"
    assert uploads == 2


@pytest.mark.parametrize("name", [GITHUB, GITLAB])
def test_the_examples_llmcloud_variables_are_spec_settings(name: str) -> None:
    # `LLMCLOUD_*` variables are read as spec overrides: an unknown one is an error
    document = _load(name)
    variables = document.get("env") or document.get("variables")
    environ = {key: str(value) for key, value in variables.items()
               if key.startswith("LLMCLOUD_")}
    assert resolve_spec(file_values={}, environ=environ).provider == "aws"


def test_github_actions_are_pinned_to_a_release() -> None:
    uses = [step["uses"] for _, _, step, _ in _github_steps() if "uses" in step]
    assert len(uses) >= 12
    for action in uses:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+(\.\d+){0,2}", action), \
            f"{action}: not pinned to a release tag (a branch moves under the workflow)"


def _reads(name: str) -> list[tuple[str, str]]:
    """(file, field) of every JSON document an example reads: `jq -r .F FILE` and
    `json.load(open("FILE"))["F"]`."""
    text = (EXAMPLES / name).read_text()
    found = re.findall(r'jq -r \.(\w+) "?([^\s")]+)"?', text)
    found += [(field, file) for file, field in
              re.findall(r'json\.load\(open\("([^"]+)"\)\)\["(\w+)"\]', text)]
    return [(Path(file).name, field) for field, file in found]


def _writers(name: str) -> dict[str, tuple[str, str]]:
    """{file: the `llmcloud` command whose `--json` document it holds}."""
    text = (EXAMPLES / name).read_text()
    return {Path(file).name: (group, command) for group, command, file in re.findall(
        r'llmcloud (\w+) (\w+) [^>\n]*--json > "?([^\s"]+)"?', text)}


@pytest.fixture
def printed(cli, project, monkeypatch) -> dict[tuple[str, str], dict]:
    """The `--json` documents of the real `image build` and `image push` (the builder's
    and the cloud's answers faked)."""
    from llmcloud.providers.aws.provider import AwsProvider

    Path("Pulumi.staging.yaml").write_text("config:\n  llmcloud:provider: aws\n")
    builder = ib.Builder("docker", "/usr/bin/docker")
    monkeypatch.setattr(ib, "detect_builder", lambda preferred=None: builder)
    monkeypatch.setattr(ib, "source_checkout", lambda: project)
    monkeypatch.setattr(ib, "build_image", lambda *args, **kwargs: "sha256:local")
    monkeypatch.setattr(ib, "tag_image", lambda *args: None)
    monkeypatch.setattr(ib, "push_image", lambda *args, **kwargs: DIGEST)
    monkeypatch.setattr(AwsProvider, "outputs",
                        lambda self, ctx: {"outputs": {"registry_url": REGISTRY}})
    monkeypatch.setattr(AwsProvider, "registry_login", lambda self, ctx, registry: ("AWS", "t"))
    built = cli("image", "build", "--builder", "docker", "--json")
    assert built.exit_code == 0, built.output
    image = json.loads(built.stdout)["image"]
    pushed = cli("image", "push", image, "--stack", "staging", "--json")
    assert pushed.exit_code == 0, pushed.output
    return {("image", "build"): json.loads(built.stdout),
            ("image", "push"): json.loads(pushed.stdout)}


@pytest.mark.parametrize("name", [GITHUB, GITLAB])
def test_every_field_an_example_reads_is_one_its_command_prints(name: str, printed) -> None:
    reads, writers = _reads(name), _writers(name)
    assert len(reads) >= 4
    for file, field in reads:
        document = printed[writers[file]]
        assert field in document, f"{name} reads .{field} of {file}, which " \
                                  f"`llmcloud {' '.join(writers[file])} --json` does not print"
    # what the push printed is what `update --image` takes: pinned by digest, in the
    # stack's own registry (on AWS, its ECR repository itself)
    pinned = printed[("image", "push")]["pinned"]
    assert pinned == f"{REGISTRY}@{DIGEST}"
    spec = resolve_spec(file_values={"provider": "aws"}, environ={}, flags={"image": pinned})
    assert spec.image == pinned


def test_gitlabs_oidc_token_reaches_llmcloud_and_the_aws_sdk(tmp_path, monkeypatch) -> None:
    """The before_script run by bash with the job's ID token: what it exports is what
    llmcloud's credential check and botocore's provider chain (pulumi-aws's SDK reads the
    same variables) take. The example only said "AWS credentials (or OIDC)"."""
    import subprocess

    import botocore.session

    from llmcloud.providers.credentials import check_aws

    pipeline = _load(GITLAB)
    for job in ("build", "staging", "production"):  # each job asks for the token
        template = pipeline.get(pipeline[job].get("extends"), {})
        assert template.get("id_tokens", {}).get("AWS_ID_TOKEN") == \
            {"aud": "sts.amazonaws.com"}, f"{job} gets no ID token for AWS"
    setup = [line for line in pipeline["default"]["before_script"] if "AWS_ID_TOKEN" in line]
    assert setup, "gitlab-ci.yml never hands the job's ID token to the AWS SDKs"
    token = "eyJhbGciOiJSUzI1NiJ9.e30.c2ln"
    clean = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
             "DEPLOY_ROLE_ARN": "arn:aws:iam::123456789012:role/deploy", "AWS_ID_TOKEN": token}
    shown = subprocess.run(["bash", "-ec", "\n".join(setup) + "\nenv -0"], env=clean,
                           capture_output=True, text=True, check=True)
    assert token not in shown.stderr  # nothing echoed to the job log
    exported = dict(item.split("=", 1) for item in shown.stdout.split("\0") if "=" in item)
    token_file = Path(exported["AWS_WEB_IDENTITY_TOKEN_FILE"])
    assert token_file.read_text() == token
    assert not str(token_file).startswith(str(Path.cwd()))  # outside the checkout
    check_aws(exported)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    for name in ("AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.setenv(name, exported[name])
    credentials = botocore.session.Session().get_credentials()
    assert credentials.method == "assume-role-with-web-identity"


@pytest.mark.parametrize("name", [GITHUB, GITLAB])
def test_no_example_step_prints_a_secret(name: str) -> None:
    # GitHub masks only registered secrets, and `keys create` prints the key it makes
    document = _load(name)
    scripts = _scripts(document)
    calls = [call for script in scripts for call in _llmcloud_calls(script)]
    assert not [call for call in calls if call[:2] == ["keys", "create"]]
    for script in scripts:
        assert "secrets." not in script, f"{name}: a secret spelt into a script: {script}"
        for line in script.splitlines():
            if "API_KEY" in line:  # only ever handed to llmcloud as its variable
                assert re.match(r"\s*LLMCLOUD_API_KEY=\$\w+ llmcloud ", line), line
    if name == GITHUB:
        keys = {env["LLMCLOUD_API_KEY"] for _, _, step, env in _github_steps()
                if "LLMCLOUD_API_KEY" in step.get("env", {})}
        assert keys == {"${{ secrets.STAGING_API_KEY }}", "${{ secrets.PROD_API_KEY }}"}
