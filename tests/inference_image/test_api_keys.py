"""API keys stored as sha256 hashes."""

from __future__ import annotations

import hashlib

import pytest

from llmcloud.inference_image.api_keys import ApiKeys, hash_api_key


def test_hash_is_sha256_of_utf8_with_prefix():
    assert hash_api_key("clé") == "sha256:" + hashlib.sha256("clé".encode()).hexdigest()


def test_keys_file_round_trip(tmp_path):
    path = tmp_path / "keys.txt"
    path.write_text(f"# team keys\n{hash_api_key('alpha')}\n\n{hash_api_key('beta').upper()}\n")
    keys = ApiKeys.from_file(path)
    assert keys.check("alpha") and keys.check("beta")
    assert not keys.check("gamma") and not keys.check("")


@pytest.mark.parametrize("content", ["alpha\n", "sha256:abc\n", "", "# only a comment\n",
                                     "md5:" + "0" * 64])
def test_bad_keys_file_is_rejected(tmp_path, content):
    path = tmp_path / "keys.txt"
    path.write_text(content)
    with pytest.raises(ValueError, match="keys.txt"):
        ApiKeys.from_file(path)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def replace(path, text):
    """Write a new file and rename it into place, as the clouds' refreshers do."""
    new = path.with_suffix(".new")
    new.write_text(text)
    new.replace(path)


def test_a_changed_keys_file_is_followed_without_a_restart(tmp_path):
    from llmcloud.inference_image.api_keys import RELOAD_INTERVAL_S

    path, clock = tmp_path / "keys.txt", Clock()
    path.write_text(hash_api_key("alpha") + "\n")
    keys = ApiKeys.from_file(path, clock=clock)
    replace(path, f"# key-1 ci\n{hash_api_key('beta')}\n")  # alpha revoked, beta added
    assert keys.check("alpha") and not keys.check("beta")  # not looked at yet
    clock.now += RELOAD_INTERVAL_S
    assert keys.check("beta") and not keys.check("alpha")
    path.write_text(f"{hash_api_key('beta')}\n{hash_api_key('gamma')}\n")  # in place too
    clock.now += RELOAD_INTERVAL_S
    assert keys.check("gamma") and keys.check("beta")


@pytest.mark.parametrize("broken", ["half a line\n", "", None], ids=["bad", "empty", "gone"])
def test_a_keys_file_that_no_longer_reads_keeps_the_keys_before(tmp_path, caplog, broken):
    from llmcloud.inference_image.api_keys import RELOAD_INTERVAL_S

    path, clock = tmp_path / "keys.txt", Clock()
    path.write_text(hash_api_key("alpha") + "\n")
    keys = ApiKeys.from_file(path, clock=clock)
    if broken is None:
        path.unlink()
    else:
        replace(path, broken)
    clock.now += RELOAD_INTERVAL_S
    assert keys.check("alpha") and not keys.check("half a line")
    if broken is not None:
        assert "keeping the 1 keys read before" in caplog.text
