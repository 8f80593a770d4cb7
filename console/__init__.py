"""The management console (`llmcloud console`): a web page over one stack — deployment,
model versions with promote and rollback, API keys, metrics — served on loopback.

Entry points: `serve_stack(provider, ctx, port)` serves any provider from its outputs,
status and offline plan (cloud stacks); the local provider serves its richer backend from
`providers/local/console_entry.py`. Both check first that the web pieces are installed.
"""

from __future__ import annotations

import importlib.util

from llmcloud.stacks.errors import MissingToolError, install_hint

WEB_MODULES = ("fastapi", "uvicorn", "jinja2", "prometheus_client")


def require_web_stack() -> None:
    """Raise `MissingToolError` with the install command when a module the console serves
    its pages with is missing (a cloud-only install, say)."""
    missing = [m for m in WEB_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingToolError(
            f"the console needs {', '.join(missing)}, which is not installed",
            context="these come with llmcloud's 'runtime' extra",
            hint=install_hint("runtime"),
        )


def serve_stack(provider, ctx, port: int = 8765, host: str = "127.0.0.1") -> None:
    """`Provider.console` for any provider (see `console.server.serve_stack`)."""
    require_web_stack()
    from llmcloud.console.server import serve_stack as serve

    serve(provider, ctx, port, host=host)
