"""`LLMCLOUD_LORA_MODULES` (how SageMaker's container gets the spec's adapters) read as
`--lora-modules` is: space-separated name=source pairs, or vLLM's JSON object, whose
spaces are its own; a flag replaces the variable."""

from __future__ import annotations

import pytest

from llmcloud.inference_image.server_options import build_parser, parse_lora_modules


@pytest.mark.parametrize(("variable", "modules"), [
    ("chat=./adapters/chat sql=./adapters/sql",
     {"chat": "./adapters/chat", "sql": "./adapters/sql"}),
    ('{"name": "sql", "path": "s3://bucket/adapters/sql"}',
     {"sql": "s3://bucket/adapters/sql"}),
])
def test_the_variable_is_read_as_the_flag(monkeypatch, variable, modules):
    monkeypatch.setenv("LLMCLOUD_LORA_MODULES", variable)
    args = build_parser().parse_args(["--model", "m"])
    assert parse_lora_modules(args.lora_modules) == modules
    flagged = build_parser().parse_args(["--model", "m", "--lora-modules", "a=./a"])
    assert parse_lora_modules(flagged.lora_modules) == {"a": "./a"}


def test_an_empty_variable_is_no_adapters(monkeypatch):
    monkeypatch.setenv("LLMCLOUD_LORA_MODULES", " ")
    assert build_parser().parse_args(["--model", "m"]).lora_modules is None
