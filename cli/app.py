"""The `llmcloud` command: a Typer app whose commands are thin wrappers over the providers.

Command modules import nothing heavy at module level, so `llmcloud --help` stays fast; every
`LlmcloudError` is caught in one place (`LlmcloudGroup.invoke`) and printed as one line, its
context and a hint, with the exit code its type carries.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from llmcloud.cli import (
    image_commands,
    init_command,
    keys_commands,
    logs_command,
    model_commands,
    plan_command,
    stack_commands,
)
from llmcloud.cli.output import set_debug


class LlmcloudGroup(TyperGroup):
    """Catches every error a command raises and reports it the same way."""

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        if option is not None and not getattr(option, "_absent_is_false", False):
            # Typer coerces an absent --help (None) through pydantic, which costs a tenth of
            # a second on every `llmcloud COMMAND --help`; an absent flag is simply False.
            process_value = option.process_value
            option.process_value = lambda ctx, value: process_value(ctx, bool(value))
            option._absent_is_false = True
        return option

    def invoke(self, ctx: Any) -> Any:
        from typer._click.exceptions import ClickException

        # (read now: the group's invoke takes them off the context)
        command = [*(getattr(ctx, "_protected_args", None)
                     or getattr(ctx, "protected_args", None) or []), *ctx.args]
        try:
            return super().invoke(ctx)
        except ClickException as exc:
            if "--json" not in command:
                raise
            # a usage error (a bad flag value, an unknown option) is an error document too:
            # with --json, stdout holds exactly one JSON document whatever happens
            from llmcloud.cli.output import Output

            exc.show()
            # the group's own path (`llmcloud keys`), not just `llmcloud`: a subcommand's
            # hint named a command that does not exist (`llmcloud create --help`)
            named = command[:1]
            if named and self.get_command(ctx, named[0]) is None:
                named = []  # a mistyped command: `llmcloud promte --help` fails the same way
            path = ["llmcloud", *_group_path(ctx), *named]
            doc = {"error": exc.format_message(), "context": None,
                   "hint": f"{' '.join(path)} --help",
                   "exit_code": exc.exit_code}
            Output.start(json=True).result(doc)
            raise typer.Exit(exc.exit_code) from None
        except (typer.Exit, typer.Abort):
            raise
        except BrokenPipeError:
            # whoever read stdout went away (`llmcloud plan --json | head -1`): nothing is
            # wrong with the command, and it is not "a bug in llmcloud"; quiet, as other
            # tools are, and nothing more is written to the closed pipe
            from llmcloud.cli.output import silence_stdout

            silence_stdout()
            raise typer.Exit(1) from None
        except BaseException as exc:
            if isinstance(exc, SystemExit):
                raise
            from llmcloud.cli.errors import report

            raise typer.Exit(report(exc, json_asked="--json" in command)) from None


def _group_path(ctx: Any) -> list[str]:
    """The names of the groups below the top one that lead to `ctx` (`["keys"]`)."""
    names = []
    while ctx is not None and ctx.parent is not None:
        names.append(ctx.info_name)
        ctx = ctx.parent
    return names[::-1]


HELP = """Deploy an LLM behind a secure, autoscaled, monitored HTTPS endpoint on AWS, Azure,
GCP or this machine, from one deployment spec (Pulumi.<stack>.yaml)."""

app = typer.Typer(
    name="llmcloud",
    cls=LlmcloudGroup,
    help=HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"llmcloud {version('llmcloud')}")
        raise typer.Exit()


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="show tracebacks on errors")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print version")
    ] = False,
) -> None:
    """Deploy an LLM behind a secure, autoscaled, monitored endpoint."""
    set_debug(debug)


app.command("init")(init_command.init)
app.command("up")(stack_commands.up)
app.command("plan")(plan_command.plan)
for _name in ("preview", "update", "destroy", "refresh", "status", "outputs"):
    app.command(_name)(getattr(stack_commands, _name))
app.command("logs")(logs_command.logs)
app.command("promote")(model_commands.promote)
app.command("rollback")(model_commands.rollback)

image_app = typer.Typer(
    cls=LlmcloudGroup, help="Build and push the inference image.", no_args_is_help=True
)
image_app.command("build")(image_commands.build)
image_app.command("push")(image_commands.push)
app.add_typer(image_app, name="image")

model_app = typer.Typer(
    cls=LlmcloudGroup, help="Upload, list and delete model versions in the stack's model store.",
    no_args_is_help=True,
)
model_app.command("upload")(model_commands.upload)
model_app.command("list")(model_commands.list_versions)
model_app.command("delete")(model_commands.delete)
app.add_typer(model_app, name="model")

keys_app = typer.Typer(
    cls=LlmcloudGroup, help="Create, list and revoke the gateway's API keys.",
    no_args_is_help=True,
)
keys_app.command("create")(keys_commands.create)
keys_app.command("list")(keys_commands.list_keys)
keys_app.command("revoke")(keys_commands.revoke)
app.add_typer(keys_app, name="keys")

app.command("console")(stack_commands.console)
