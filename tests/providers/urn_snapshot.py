"""The committed snapshot of the URNs the cloud programs declare, and the check that an
upgrade of llmcloud keeps every one of them (or says why not).

A resource whose URN changes is deleted and created anew by the next `llmcloud up`: a new
bucket, address, key or gateway URL; so is, on most clouds, one whose name in the cloud
changes. A URN of the snapshot that the programs no longer declare must be mapped by an
`aliases` option of the resource that now stands for it, and a resource's names in its
cloud (`stack_urns.cloud_names`) must stay as they were, or the URN must be listed in
`urn_replacements.json` with the reason the replacement is harmless.

Regenerate the snapshot when resources are added (so they are guarded too), or once a
release has shipped the listed replacements:

    python -m tests.providers.urn_snapshot --write

It refuses while a URN of the old snapshot is unaccounted for, and empties the list of
replacements (their reasons stay in git's history). `--out FILE` writes the declared URNs
without checking (to compare with another checkout of llmcloud).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import NamedTuple

HERE = Path(__file__).parent
SNAPSHOT = HERE / "declared_urns.json"
REPLACEMENTS = HERE / "urn_replacements.json"

#: the longest stack name `stacks.config` accepts: the names llmcloud fits to the clouds'
#: limits (`providers.naming.fit`) are declared, as a long stack's state keeps them
LONG_STACK = ("team-" * 25)[:99] + "x"


class Case(NamedTuple):
    """A stack to declare: its provider, stack file sections, the cloud's own options
    (`AwsOptions`, set by a fork) and the stack's name."""

    provider: str
    sections: dict = {}
    options: dict = {}
    stack: str = "dev"


#: each cloud's default stack, the settings that change which resources it declares, and
#: the longest stack name (whose names llmcloud shortens to fit)
CASES: dict[str, Case] = {
    "aws": Case("aws"),
    "aws-sagemaker": Case("aws", {"compute": {"kind": "sagemaker"}}),
    "aws-waf-private-endpoints": Case("aws", options={"waf": True, "private_endpoints": True}),
    "aws-long-stack": Case("aws", stack=LONG_STACK),
    "gcp": Case("gcp"),
    "gcp-domain": Case("gcp", {"gateway": {"domain": "llm.example.com"}}),
    "gcp-long-stack": Case("gcp", stack=LONG_STACK),
    "azure": Case("azure"),
    "azure-long-stack": Case("azure", stack=LONG_STACK),
}


@contextlib.contextmanager
def _options(provider: str, options: dict) -> Iterator[None]:
    """`AwsOptions` (what a fork sets on `AwsProvider.options`) for one declaration."""
    if not options:
        yield
        return
    from llmcloud.providers.aws.provider import AwsProvider
    from llmcloud.providers.aws.service import AwsOptions

    assert provider == "aws", provider
    AwsProvider.options = AwsOptions(**options)
    try:
        yield
    finally:
        AwsProvider.options = None


@cache
def _declared(case: str) -> str:
    from tests.providers.declared import spec_for
    from tests.providers.stack_urns import record_urns

    provider, sections, options, stack = CASES[case]
    with _options(provider, options):
        return json.dumps(record_urns(spec_for(provider, **sections), stack))


def declared(case: str) -> dict[str, dict]:
    """A case's URNs, each with the older URNs its aliases map onto it (`aliases`) and the
    names its inputs give it in its cloud (`names`)."""
    return json.loads(_declared(case))


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def unaccounted(snapshot: dict[str, dict[str, dict]], replacements: dict[str, str],
                declared_by_case: dict[str, dict[str, dict]]) -> list[str]:
    """What an upgrade would replace unannounced: each URN of the snapshot (with the names
    it had in its cloud) that a case no longer declares, under its URN or an alias, or
    declares under other names; unless `replacements` gives the reason."""
    found = []
    for case, urns in sorted(snapshot.items()):
        now = dict(declared_by_case[case])
        for entry in declared_by_case[case].values():
            for old in entry["aliases"]:
                now.setdefault(old, entry)
        for urn, names in sorted(urns.items()):
            if replacements.get(urn, "").strip():
                continue
            if urn not in now:
                found.append(f"{case}: {urn}")
            elif now[urn]["names"] != names:
                found.append(f"{case}: {urn} (named {names} in its cloud, now "
                             f"{now[urn]['names']})")
    return found


def check() -> list[str]:
    """`unaccounted` for the committed snapshot and replacements against the programs now."""
    snapshot = load(SNAPSHOT)
    return unaccounted(snapshot, load(REPLACEMENTS),
                       {case: declared(case) if case in CASES else {} for case in snapshot})


def current() -> dict[str, dict[str, dict]]:
    """The snapshot the programs declare now: each case's URNs and their names."""
    return {case: {urn: entry["names"] for urn, entry in declared(case).items()}
            for case in CASES}


def _write(path: Path, urns: dict[str, dict[str, dict]]) -> None:
    path.write_text(json.dumps(urns, indent=1, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.providers.urn_snapshot",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true",
                        help=f"rewrite {SNAPSHOT.name} (refused while a URN is unaccounted for)")
    parser.add_argument("--out", type=Path, help="write the declared URNs here, unchecked")
    args = parser.parse_args(argv)
    logging.getLogger().setLevel(logging.ERROR)  # the programs' warnings to their users
    if args.out:
        _write(args.out, current())
        return 0
    missing = check()
    for line in missing:
        print(f"replaced on upgrade: {line}", file=sys.stderr)
    if missing:
        print(f"alias each in its component, or give the reason in {REPLACEMENTS.name}",
              file=sys.stderr)
        return 1
    if args.write:
        _write(SNAPSHOT, current())
        # the snapshot now holds what is declared: the listed replacements are done
        REPLACEMENTS.write_text("{}\n")
        print(f"wrote {SNAPSHOT} and emptied {REPLACEMENTS.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
