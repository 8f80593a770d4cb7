"""The README's spec reference (its sample stack file and the table of which provider uses
which setting) names every field of the spec, and no field the spec does not have."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from pydantic import BaseModel

from llmcloud.stacks.config import NAMESPACE
from llmcloud.stacks.spec import DeploymentSpec

README = Path(__file__).resolve().parents[2] / "README.md"


def _spec_section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## The deployment spec\n")
    return text[start:text.index("\n## Commands\n", start)]


def _fields() -> dict[str, list[str]]:
    """Each section's fields (top-level values as their own name)."""
    found = {}
    for name, field in DeploymentSpec.model_fields.items():
        model = field.annotation
        is_section = isinstance(model, type) and issubclass(model, BaseModel)
        found[name] = list(model.model_fields) if is_section else []
    return found


def test_the_sample_stack_file_names_only_fields_of_the_spec():
    section = _spec_section()
    sample = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    config = yaml.safe_load(sample)["config"]
    fields = _fields()
    for key, value in config.items():
        name = key.removeprefix(f"{NAMESPACE}:")
        assert name in fields, key
        if fields[name] and isinstance(value, dict):
            assert set(value) <= set(fields[name]), (key, set(value) - set(fields[name]))


def test_every_field_of_the_spec_is_in_the_reference():
    section = _spec_section()
    missing = [f"{name}.{sub}" if sub else name
               for name, subs in _fields().items() for sub in (subs or [""])
               if not re.search(rf"\b{re.escape(sub or name)}\b", section)]
    assert missing == []
