"""Resolve a deployment spec once, in a fixed order, and report where each value came from.

Order, lowest first: the provider's defaults, `Pulumi.<stack>.yaml` (keys `llmcloud:*`),
`LLMCLOUD_*` environment variables (`LLMCLOUD_REGION`, `LLMCLOUD_COMPUTE__MAX_REPLICAS`),
CLI flags. An invalid value fails here, before anything runs, naming the key, the bad value,
where it came from and what is allowed.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from llmcloud.stacks.errors import ConfigError
from llmcloud.stacks.spec import DeploymentSpec

NAMESPACE = "llmcloud"
ENV_PREFIX = "LLMCLOUD_"
_STACK_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")
SECTIONS = tuple(DeploymentSpec.model_fields)


def stack_file(project_dir: Path, stack: str) -> Path:
    """The path of a stack's settings file, `Pulumi.<stack>.yaml`; raises ConfigError for a
    name Pulumi would refuse (its rule: letters, digits, '-', '_' and '.')."""
    if not _STACK_NAME.fullmatch(stack) or stack in (".", ".."):
        raise ConfigError(f"{stack!r} is not a stack name",
                          context="a stack name is 1 to 100 letters, digits, '-', '_' or '.' "
                                  "(Pulumi's rule)",
                          hint="e.g. --stack prod or --stack dev-eu")
    return Path(project_dir) / f"Pulumi.{stack}.yaml"


def read_stack_config(path: Path) -> dict[str, Any]:
    """The `llmcloud:*` values of a stack file as a nested dict (empty if there is no file)."""
    if not path.exists():
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        # a folder of that name, a file without read permission, or one in another encoding:
        # the user's to fix (it was an "unexpected error ... a bug in llmcloud", exit 1)
        reason = (f"it is not UTF-8 text ({exc.reason} at byte {exc.start})"
                  if isinstance(exc, UnicodeDecodeError)
                  else exc.strerror or type(exc).__name__)
        fresh = f"llmcloud init --stack {path.stem[7:]} --force"
        raise ConfigError(
            f"cannot read {path.name}",
            context=f"{path}: {reason}",
            hint=(f"move the folder away, then: {fresh}" if path.is_dir()
                  else f"fix the file, or write a fresh one with: {fresh}"),
        ) from None
    try:
        document = yaml.load(text, Loader=StackFileLoader) or {}  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"{path.name} is not valid YAML",
            context=_yaml_problem(exc),
            hint=f"fix the file, or write a fresh one with: llmcloud init --stack {path.stem[7:]}"
                 " --force",
        ) from None
    config = document.get("config") or {} if isinstance(document, dict) else None
    if not isinstance(config, dict):
        raise ConfigError(f"{path.name} has no 'config:' mapping", hint="see llmcloud init")
    values: dict[str, Any] = {}
    for key, value in config.items():
        namespace, _, name = str(key).partition(":")
        if namespace != NAMESPACE or not name:
            continue  # other namespaces (aws:region, pulumi:tags) belong to Pulumi itself
        if isinstance(value, dict) and "secure" in value:
            raise ConfigError(
                f"{key} is a Pulumi secret, and llmcloud's spec holds no secrets",
                hint=f"set it in plain text: pulumi config set {key} VALUE",
            )
        if value is not None:  # `key:` with every sub-key commented out means "not set"
            values[name] = value
    return values


class StackFileLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key written twice in one mapping (YAML requires keys
    to be unique, and Go's yaml.v3 refuses them: "mapping key already defined"). The safe
    loader kept the last one, so a second `llmcloud:budget:` lower in the file raised the
    budget `plan` gated on without a word."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                    continue  # keys merged in with `<<: *anchor` may be overridden
                if key_node.value in first:
                    raise yaml.constructor.ConstructorError(
                        None, None,
                        f"key '{key_node.value}' is written twice (first on line "
                        f"{first[key_node.value] + 1})", key_node.start_mark)
                first[key_node.value] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """What is wrong and where (`line 3, column 1: found character '\\t' ...`): the first
    line of the error alone ("while scanning for the next token") said neither."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if problem is None:
        return str(exc).splitlines()[0]
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + problem


def config_from_pulumi(get: Callable[[str], Any], keys: Iterable[str] = ()) -> dict[str, Any]:
    """The spec's values as seen by a Pulumi program; `get(key)` returns a value or None.

    `keys` are the names the stack's config holds under `llmcloud:`: one that is no section
    of the spec (a typo, `llmcloud:regoin`) is kept, so validation refuses it as the CLI
    does (a plain `pulumi up` ignored it and deployed the default instead).
    Only the stacks entry point calls this, with `pulumi.Config("llmcloud")`.
    """
    values = {}
    for section in (*SECTIONS, *sorted(set(keys) - set(SECTIONS))):
        raw = get(section)
        # `key:` with every sub-key commented out (as `init` writes `budget:`) reaches the
        # program as "" or "null": not set, as the CLI reads the stack file
        if raw is None or (isinstance(raw, str) and raw.strip() in ("", "null", "~")):
            continue
        if isinstance(raw, str) and raw[:1] in "{[":
            try:
                raw = json.loads(raw)
            except json.JSONDecodeError:
                pass
        values[section] = raw
    return values


def env_overrides(environ: Mapping[str, str],
                  names: dict[tuple[str, ...], str] | None = None) -> dict[str, Any]:
    """The spec values set by `LLMCLOUD_<SECTION>[__<KEY>]` environment variables; `names`,
    when given, gets each value's path and the variable that set it."""
    values: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        if path[0] not in SECTIONS or not all(path):
            _check_not_a_typo(name)
            if len(path) > 1:
                _refuse_unknown_section(name, path)
            continue  # LLMCLOUD_STACK, LLMCLOUD_DEBUG and others are not spec values
        value: Any = raw
        if raw[:1] in "[{":
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = raw
        _set_path(values, path, value)
        if names is not None:
            names[tuple(path)] = name
    return values


#: LLMCLOUD_ variables of the model server's that read like a spec key with one underscore
_SERVER_VARIABLES = {"LLMCLOUD_MODEL_VERSION", "LLMCLOUD_MODEL_NAME"}


def _check_not_a_typo(name: str) -> None:
    """Refuse `LLMCLOUD_BUDGET_MAX_HOURLY_USD`, a spec key with one underscore after its
    section: skipped as "not a spec value", it silently turned the budget gate off."""
    rest = name[len(ENV_PREFIX):].lower()
    for section in SECTIONS:
        key = rest.removeprefix(section + "_")
        model = DeploymentSpec.model_fields[section].annotation
        fields = getattr(model, "model_fields", {})
        if key != rest and key in fields and name not in _SERVER_VARIABLES:
            right = f"{ENV_PREFIX}{section.upper()}__{key.upper()}"
            raise ConfigError(f"{name} is not a spec variable: did you mean {right}?",
                              context="a section and its key are joined by two underscores",
                              hint=f"export {right}=... (and unset {name})")


def _refuse_unknown_section(name: str, path: list[str]) -> None:
    """Refuse `LLMCLOUD_BUGDET__MAX_HOURLY_USD`: only spec variables are spelt with two
    underscores, and skipped as "not a spec value", a misspelt section silently turned the
    budget gate (or any other setting) off."""
    close = difflib.get_close_matches(path[0], SECTIONS, n=1)
    right = (f"{ENV_PREFIX}{'__'.join([close[0], *path[1:]]).upper()}"
             if close and all(path[1:]) else None)
    raise ConfigError(
        f"{name} is not a spec variable"
        + (f": did you mean {right}?" if right else ""),
        context=f"spec variables are {ENV_PREFIX}<SECTION>__<KEY>, the sections: "
                + ", ".join(SECTIONS),
        hint=f"export {right}=... (and unset {name})" if right else f"unset {name}",
    )


def dotted_overrides(flags: Mapping[str, Any]) -> dict[str, Any]:
    """CLI flag values given as `{"compute.max_replicas": 4}`; None means not given."""
    values: dict[str, Any] = {}
    for dotted, value in flags.items():
        if value is not None:
            _set_path(values, dotted.split("."), value)
    return values


def resolve_spec(
    *,
    file_values: Mapping[str, Any],
    environ: Mapping[str, str],
    flags: Mapping[str, Any] | None = None,
    defaults_for: Callable[[str], Mapping[str, Any]] | None = None,
    source_name: str = "Pulumi.yaml",
) -> DeploymentSpec:
    """Merge the layers in order and validate them into a `DeploymentSpec`.

    `defaults_for(provider)` supplies the provider's defaults; the provider itself is taken
    from the highest layer that names one.
    """
    env_names: dict[tuple[str, ...], str] = {}
    env_values = env_overrides(environ, env_names)
    flag_values = dotted_overrides(flags or {})
    layers = [(source_name, dict(file_values)), ("environment", env_values), ("flag", flag_values)]
    provider = "local"
    for _, layer in layers:
        provider = layer.get("provider", provider)
    merged: dict[str, Any] = {}
    origins: dict[str, str] = {}
    if defaults_for is not None and isinstance(provider, str):
        try:
            merged = copy.deepcopy(dict(defaults_for(provider)))
        except KeyError:
            pass  # an unknown provider is reported by validation below
    for origin, layer in layers:
        _merge(merged, layer, origin, origins, ())
    try:
        return DeploymentSpec.model_validate(merged)
    except ValidationError as exc:
        raise _config_error(exc, merged, origins, env_names) from None


def flags_to_env(flags: Mapping[str, Any]) -> dict[str, str]:
    """CLI flags (`{"compute.max_replicas": 4}`) as the `LLMCLOUD_*` variables that carry
    them into the Pulumi program."""
    env = {}
    for dotted, value in flags.items():
        if value is None:
            continue
        name = ENV_PREFIX + dotted.replace(".", "__").upper()
        env[name] = value if isinstance(value, str) else json.dumps(value)
    return env


def check_flags(flags: Mapping[str, Any]) -> None:
    """Validate spec values given on the command line alone (e.g. `--model-version`)."""
    resolve_spec(file_values={}, environ={}, flags=flags)


def spec_to_config(spec: DeploymentSpec) -> dict[str, Any]:
    """The spec as `llmcloud:*` stack config values (what `Pulumi.<stack>.yaml` holds)."""
    data = spec.model_dump(mode="json", exclude_none=True)
    return {f"{NAMESPACE}:{key}": value for key, value in data.items()}


def write_stack_config(path: Path, spec: DeploymentSpec) -> None:
    """Write the spec into a stack file, keeping its other namespaces' keys."""
    document: dict[str, Any] = {}
    if path.exists():
        document = yaml.safe_load(path.read_text()) or {}
    config = {
        key: value
        for key, value in (document.get("config") or {}).items()
        if not str(key).startswith(f"{NAMESPACE}:")
    }
    config.update(spec_to_config(spec))
    document["config"] = config
    path.write_text(yaml.safe_dump(document, sort_keys=False))


def _set_path(target: dict[str, Any], path: list[str], value: Any) -> None:
    for part in path[:-1]:
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            return
    target[path[-1]] = value


def _merge(
    into: dict[str, Any],
    layer: Mapping[str, Any],
    origin: str,
    origins: dict[str, str],
    prefix: tuple[str, ...],
) -> None:
    for key, value in layer.items():
        path = (*prefix, str(key))
        # tags merge key by key like sections; other dict values replace what was there
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value, origin, origins, path)
            continue
        into[key] = copy.deepcopy(value)
        origins[".".join(path)] = origin
        if isinstance(value, dict):
            for sub in value:
                origins[".".join((*path, str(sub)))] = origin


def _section_model(annotation: Any) -> Any:
    """The section's model class, out of an optional one (`Section | None`)."""
    if hasattr(annotation, "model_fields"):
        return annotation
    return next((arg for arg in typing.get_args(annotation) if hasattr(arg, "model_fields")),
                annotation)


def _config_error(exc: ValidationError, merged: dict, origins: dict[str, str],
                  env_names: Mapping[tuple[str, ...], str]) -> ConfigError:
    first = exc.errors()[0]
    loc = [str(part) for part in first["loc"]]
    if first["type"] == "kind_not_offered":
        loc.append("kind")  # raised where the provider is known, about compute.kind
        first = {**first, "input": first["input"].get("kind")}
    elif first["type"] in ("target_over_capacity", "requests_target_unchosen"):
        # raised where the server's batch or the provider is known, about the target
        loc = ["autoscaling", "target"]
        first = {**first, "input": first["ctx"]["target"]}
        # a target no layer set is the default's, not that of the layer giving `autoscaling`
        origins.setdefault("autoscaling.target", "defaults")
    key = ".".join(loc) or "(spec)"
    meant: list[str] = []
    value = first.get("input")
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        section = merged
        for part in loc[:-1]:
            section = section.get(part, {}) if isinstance(section, dict) else {}
        model: Any = DeploymentSpec
        for part in loc[:-1]:
            model = _section_model(model.model_fields[part].annotation)
        fields = list(getattr(model, "model_fields", {}))
        message = f"unknown key; allowed keys: {', '.join(fields)}"
        close = difflib.get_close_matches(loc[-1], fields, n=1)
        if close:  # a misspelt key: say which one was meant, not only the list to search
            meant = [*loc[:-1], close[0]]
        value = section.get(loc[-1]) if isinstance(section, dict) else value
    origin = origins.get(key) or origins.get(".".join(loc[:1]), "defaults")
    if origin == "environment":
        # the variable that was set: `LLMCLOUD_TAGS='{"team": 1}'` named LLMCLOUD_TAGS__TEAM,
        # a variable nobody had set
        origin = next((env_names[tuple(loc[:n])] for n in range(len(loc), 0, -1)
                       if tuple(loc[:n]) in env_names), ENV_PREFIX + "__".join(loc).upper())
    elif origin == "flag":
        origin = "a command-line flag"
    hint = "fix the value, or see every key with its default: llmcloud init --stack NAME"
    if meant:
        right = (ENV_PREFIX + "__".join(meant).upper() if origin.startswith(ENV_PREFIX)
                 else f"{NAMESPACE}:{'.'.join(meant)}")
        hint = f"did you mean {right}? " + hint.replace("fix the value", "fix the key")
    more = len(exc.errors()) - 1
    context = f"{message} (value {json.dumps(value, default=str)} from {origin})"
    if more:
        context += f"; and {more} more error{'s' if more > 1 else ''}"
    return ConfigError(
        f"invalid value for {NAMESPACE}:{key}",
        context=context,
        hint=hint,
    )
