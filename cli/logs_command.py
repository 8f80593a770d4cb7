"""`llmcloud logs`: the newest lines of the stack's servers' logs, on every provider."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from llmcloud.cli import options as o

#: how often `--follow` asks again: the clouds' log stores show a line seconds after it is
#: written, and each ask is an API call (CloudWatch Logs allows a few a second per account)
FOLLOW_SECONDS = {"local": 1.0, "aws": 5.0, "gcp": 5.0, "azure": 10.0}
#: the most lines one `--follow` ask prints
FOLLOW_LIMIT = 1000


def logs(
    provider: o.Provider = None,
    stack: o.Stack = "dev",
    since: Annotated[str, typer.Option(help="how far back: 30s, 10m, 2h, 1d")] = "1h",
    limit: Annotated[int, typer.Option(min=1, max=10000, help="the newest lines to show")] = 100,
    follow: Annotated[bool, typer.Option("--follow", "-f",
                                         help="keep printing new lines until Ctrl-C")] = False,
    grep: Annotated[str | None, typer.Option(help="only lines holding this text "
                                                  "(case-sensitive)")] = None,
    json: Annotated[bool, typer.Option("--json", help="one JSON object a line: time, "
                                                      "server, message")] = False,
) -> None:
    """The servers' log lines (every server or replica), oldest first, each with its
    time and server."""
    from datetime import datetime, timezone

    from llmcloud.cli.output import Output
    from llmcloud.providers.logs import parse_since

    out = Output.start(json=json, lines=True)
    start = datetime.now(timezone.utc) - parse_since(since)  # a bad --since before loading
    prov, ctx = _load(stack, provider)
    reader = _reader(prov, ctx)
    lines = reader.read(start, limit, grep)
    for line in lines:
        _print(line, json)
    if not lines:
        out.info(f"no log lines in the last {since}{_holding(grep)} in {reader.where}"
                 + ("; waiting for new ones (Ctrl-C stops)" if follow else ""))
    if follow:
        _follow(reader, lines, start, grep, json, FOLLOW_SECONDS.get(prov.name, 5.0),
                cut=len(lines) == limit)


def _load(stack: str, provider: str | None) -> tuple[Any, Any]:
    from llmcloud.cli.context import load_stack
    from llmcloud.cli.stack_commands import require_stack_file

    # a --stack typo without --provider read the empty logs of a local stack of that name
    prov, ctx = load_stack(stack=stack, provider=provider, existing=True)
    require_stack_file(prov.name, ctx)
    return prov, ctx


def _reader(prov: Any, ctx: Any) -> Any:
    from llmcloud.providers.logs import log_reader

    return log_reader(prov, ctx)


def _follow(reader: Any, printed: list, start: Any, grep: str | None, json: bool,
            every: float, cut: bool) -> None:
    """Ask again every `every` seconds from about the newest line printed; Ctrl-C ends it,
    exiting 130 as every command does when interrupted, quietly."""
    from llmcloud.providers.logs import Unseen

    unseen = Unseen(start)
    unseen.take(printed)
    if cut:  # the lines --limit left out are not new: never print them
        unseen.take([line for line in reader.read(unseen.ask_from(), FOLLOW_LIMIT, grep)
                     if line.time <= unseen.newest])
    try:
        while True:
            time.sleep(every)
            for line in unseen.take(reader.read(unseen.ask_from(), FOLLOW_LIMIT, grep)):
                _print(line, json)
    except KeyboardInterrupt:
        from llmcloud.cli.errors import interrupted_code

        raise typer.Exit(int(interrupted_code())) from None


def _print(line: Any, json: bool) -> None:
    import json as json_module

    print(json_module.dumps(line.to_dict()) if json else line.text(), flush=True)


def _holding(grep: str | None) -> str:
    return f" holding {grep!r}" if grep else ""
