"""`partial_end`, which holds back the end of a streamed text that may begin a stop string
(or a tool-call or reasoning marker), against its definition."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from llmcloud.inference_image.detokenizer import partial_end


def _by_definition(text: str, markers: list[str]) -> int:
    """The longest end of ``text``, shorter than a marker, that a marker begins with."""
    return max([size for marker in markers for size in range(1, min(len(marker), len(text) + 1))
                if text.endswith(marker[:size])], default=0)


@settings(max_examples=400, deadline=None)
@given(st.text("ab<c/", max_size=30), st.lists(st.text("ab<c/", max_size=12), max_size=4))
def test_it_is_the_longest_end_that_begins_a_marker(text, markers) -> None:
    assert partial_end(text, markers) == _by_definition(text, markers)


def test_a_long_marker_is_held_against_a_long_text() -> None:
    text = "x" * 5000 + "</tool"
    assert partial_end(text, ["y" * 100_000, "</tool_call>"]) == len("</tool")
    assert partial_end("abc" * 2000, ["c" + "abc" * 30_000 + "!"]) == 1 + 3 * 1999
    assert partial_end("abc" * 2000, ["abc" * 30_000 + "!"]) == 6000
