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
