"""`llmcloud init` writes its files, or none of them, and never over a folder's own program."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture
def bare_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder outside any Pulumi project, as the working directory."""
    folder = tmp_path / "service"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def test_init_does_not_write_over_a_folders_own_main_py(bare_folder: Path, cli) -> None:
    (bare_folder / "__main__.py").write_text("print('my app')\n")
    for force in ((), ("--force",)):
        result = cli("init", "--provider", "aws", "--json", *force)
        assert result.exit_code == 2, result.output
        assert "not llmcloud's program" in json.loads(result.stdout)["error"]
    assert (bare_folder / "__main__.py").read_text() == "print('my app')\n"
    assert sorted(p.name for p in bare_folder.iterdir()) == ["__main__.py"]


def test_init_again_where_its_own_program_is_left(bare_folder: Path, cli) -> None:
    assert cli("init").exit_code == 0
    (bare_folder / "Pulumi.yaml").unlink()
    assert cli("init", "--stack", "other").exit_code == 0
    assert (bare_folder / "Pulumi.yaml").exists()


def test_a_stack_file_that_cannot_be_written_is_a_config_error(bare_folder: Path, cli) -> None:
    # (a folder in the way stands for a read-only folder: the tests may run as root)
    (bare_folder / "Pulumi.dev.yaml").mkdir()
    result = cli("init", "--force", "--json")
    assert result.exit_code == 2, result.output
    document = json.loads(result.stdout)
    assert document["error"] == "cannot write Pulumi.dev.yaml"
    assert "Is a directory" in document["context"]
    assert "bug" not in result.stderr
    # nothing half-written: no Pulumi.yaml without a stack file
    assert sorted(p.name for p in bare_folder.iterdir()) == ["Pulumi.dev.yaml"]


def test_a_read_only_folder_is_a_config_error(
        bare_folder: Path, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    write_text = Path.write_text

    def refuse(self: Path, *args, **kwargs):
        if self.name == "__main__.py":
            raise PermissionError(13, "Permission denied", str(self))
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", refuse)
    result = cli("init", "--json")
    assert result.exit_code == 2, result.output
    document = json.loads(result.stdout)
    assert document["error"] == "cannot write __main__.py"
    assert "Permission denied" in document["context"]
    assert list(bare_folder.iterdir()) == []
