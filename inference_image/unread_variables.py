"""The ``LLMCLOUD_*`` variables in the server's environment that it does not read, said in
one warning at start: a typo, or a setting of a newer llmcloud than this image. SageMaker
passes every setting as a variable, and an image older than the llmcloud that deployed it
ignored the ones it does not know without a word (boot scripts drop such flags and say so:
``providers.server_launch.LATER_FLAGS``)."""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping

from .server_options import VARIABLES, server_version

PREFIX = "LLMCLOUD_"
#: the spec's sections: ``LLMCLOUD_<SECTION>`` and ``LLMCLOUD_<SECTION>__<KEY>`` are the
#: command line's (``stacks.config``), which a local replica inherits from the operator's
#: shell with the variables below
SPEC_SECTIONS = ("provider", "region", "image", "model", "compute", "autoscaling", "gateway",
                 "network", "budget", "server", "alerts", "tags")
#: llmcloud's other parts' variables: the command line's, the local provider's, Azure's
#: knobs, the console's, the test suite's
OTHER_PARTS = frozenset({"LLMCLOUD_HOME", "LLMCLOUD_PROJECT_DIR", "LLMCLOUD_STACK",
                         "LLMCLOUD_API_KEY", "LLMCLOUD_DEBUG", "LLMCLOUD_RUN_BY_CLI"})
OTHER_PREFIXES = ("LLMCLOUD_LOCAL_", "LLMCLOUD_AZURE_", "LLMCLOUD_CONSOLE_", "LLMCLOUD_TEST_")


def unread_variables(environ: Mapping[str, str]) -> dict[str, str | None]:
    """Each ``LLMCLOUD_*`` variable of ``environ`` that neither the server nor another part
    of llmcloud reads, sorted, with the server's variable it is closest to (or None)."""
    return {name: _closest(name) for name in sorted(environ)
            if name.startswith(PREFIX) and not _known(name)}


def warn_unread_variables(environ: Mapping[str, str], log: logging.Logger) -> None:
    """Log one warning naming the variables ``unread_variables`` finds, if any."""
    unread = unread_variables(environ)
    if not unread:
        return
    names = ", ".join(f"{name} (did you mean {close}?)" if close else name
                      for name, close in unread.items())
    log.warning("llmcloud-server %s does not read %s, set in its environment: a typo, or a "
                "setting of a newer llmcloud than this image, ignored; build and push a newer "
                "image (llmcloud image build, llmcloud image push) and deploy the reference "
                "it prints", server_version(), names)


def _known(name: str) -> bool:
    rest = name[len(PREFIX):]
    return (name in VARIABLES or name in OTHER_PARTS or name.startswith(OTHER_PREFIXES)
            or "__" in rest or rest.lower() in SPEC_SECTIONS)


def _closest(name: str) -> str | None:
    # by what follows the prefix, which every name shares and would make all of them close
    close = difflib.get_close_matches(name[len(PREFIX):],
                                      [v[len(PREFIX):] for v in VARIABLES], n=1)
    return PREFIX + close[0] if close else None
