"""`llmcloud model upload --stack S` of a version of the stack's model that cannot fit the
GPUs of its instance type warns on stderr (never refuses: the version may be meant for
another instance type), and uploads; another model's upload is not compared."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

GB = 10**9


@pytest.fixture
def uploads(project: Path, monkeypatch: pytest.MonkeyPatch) -> list:
    from llmcloud.providers.aws.provider import AwsProvider

    (project / "Pulumi.prod.yaml").write_text(
        "config:\n  llmcloud:provider: aws\n  llmcloud:model:\n    name: m\n"
        "  llmcloud:compute:\n    instance_type: g6.xlarge\n")
    done: list = []

    def upload(self, ctx, folder, *, name, version, force=False, on_progress=None):
        done.append((name, version))
        return {"name": name, "version": version, "uri": f"s3://b/models/{name}/{version}",
                "files": 2, "uploaded": 2, "skipped": 0}

    monkeypatch.setattr(AwsProvider, "model_upload", upload)
    return done


def _model(tmp_path: Path) -> Path:
    folder = tmp_path / "big"
    folder.mkdir()
    (folder / "config.json").write_text('{"torch_dtype": "bfloat16"}')
    with open(folder / "model.safetensors", "wb") as handle:
        handle.truncate(30 * GB)  # sparse: sizes only
    return folder


def test_a_version_too_big_for_the_stacks_gpus_warns_and_uploads(cli, uploads, tmp_path):
    result = cli("model", "upload", str(_model(tmp_path)), "--version", "v2",
                 "--stack", "prod", "--json")
    assert result.exit_code == 0, result.output
    assert uploads == [("m", "v2")]
    assert json.loads(result.stdout)["operation"] == "model upload"
    assert "warning: the model in" in result.stderr
    assert "does not fit the GPUs of g6.xlarge" in result.stderr


def test_another_models_upload_is_not_compared(cli, uploads, tmp_path):
    result = cli("model", "upload", str(_model(tmp_path)), "--name", "other",
                 "--version", "v1", "--stack", "prod")
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr
