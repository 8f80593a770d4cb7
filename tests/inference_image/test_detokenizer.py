"""Incremental detokenization and stop strings."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from llmcloud.inference_image.detokenizer import IncrementalText

TEXT = "Hello, how are you today? Une maison merveilleuse — ünïcödé 😀 done."


def stream(tokenizer, text: str, stops: list[str], chunk: int = 1) -> tuple[str, bool]:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    inc = IncrementalText(tokenizer, stops)
    out = []
    for i in range(0, len(ids), chunk):
        out.append(inc.add(ids[i:i + chunk]))
        if inc.stopped:
            break
    out.append(inc.finish())
    return "".join(out), inc.stopped


def test_token_by_token_reproduces_the_text(tokenizer):
    assert stream(tokenizer, TEXT, []) == (TEXT, False)


def test_stop_string_cuts_before_it(tokenizer):
    assert stream(tokenizer, TEXT, ["today"]) == ("Hello, how are you ", True)


def test_earliest_of_several_stops_wins(tokenizer):
    assert stream(tokenizer, TEXT, ["maison", "are"]) == ("Hello, how ", True)


def test_partial_stop_is_held_back_then_released(tokenizer):
    ids = tokenizer("Hello, how ar", add_special_tokens=False)["input_ids"]
    inc = IncrementalText(tokenizer, ["are you sure"])
    sent = "".join(inc.add([i]) for i in ids)
    assert not sent.endswith("ar")  # could be the start of the stop string
    assert sent + inc.finish() == "Hello, how ar"


def test_incomplete_utf8_is_not_emitted(tokenizer):
    ids = tokenizer("😀", add_special_tokens=False)["input_ids"]
    assert len(ids) > 1  # byte-level: the emoji spans several tokens
    inc = IncrementalText(tokenizer, [])
    deltas = [inc.add([i]) for i in ids]
    assert all("\ufffd" not in d for d in deltas)
    assert "".join(deltas) + inc.finish() == "😀"


@settings(max_examples=60, deadline=None)
@given(text=st.text(alphabet="abc .,é😀", min_size=1, max_size=40),
       stop=st.text(alphabet="abc .", min_size=1, max_size=4),
       chunk=st.integers(1, 4))
def test_output_is_text_before_first_stop(tokenizer, text, stop, chunk):
    out, stopped = stream(tokenizer, text, [stop], chunk)
    if stop in text:
        assert (out, stopped) == (text[:text.find(stop)], True)
    else:
        assert (out, stopped) == (text, False)
