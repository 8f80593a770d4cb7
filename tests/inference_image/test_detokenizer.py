"""Incremental detokenization and stop strings."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from llmcloud.inference_image.detokenizer import IncrementalText

TEXT = "Hello, how are you today? Une maison merveilleuse — ünïcödé 😀 done."


def stream(tokenizer, text: str, stops: list[str], chunk: int = 1,
           **options) -> tuple[str, bool]:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    inc = IncrementalText(tokenizer, stops, **options)
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


def test_the_stop_string_can_be_kept_in_the_text(tokenizer):
    assert stream(tokenizer, TEXT, ["today"], include_stop=True) == (
        "Hello, how are you today", True)


def test_no_stop_string_ends_the_text_before_min_tokens(tokenizer):
    # vLLM's min_tokens: "Hello" is in the first tokens, so only a later stop string counts
    text = "Hello, Hello, Hello."
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    first = len(tokenizer("Hello", add_special_tokens=False)["input_ids"])
    assert stream(tokenizer, text, ["Hello"], min_tokens=first) == ("Hello, ", True)
    assert stream(tokenizer, text, ["Hello"], min_tokens=len(ids)) == (text, False)


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



def test_a_stop_string_sent_before_min_tokens_does_not_end_the_answer_later(tokenizer):
    """min_tokens 5: the " x" of the 5th token is sent (too soon to stop). Alone, the stop
    string "x" then never ends the answer; with a longer stop string beside it, "x" was
    searched for in the last (longest - 1) characters already sent, and ended the answer
    at the 6th token."""
    ids = tokenizer.encode("hello x and more words here", add_special_tokens=False)
    texts = []
    for stops in (["x"], ["x", "zzzzzzzzzz"]):
        text = IncrementalText(tokenizer, stops, min_tokens=5)
        out = "".join(text.add([i]) for i in ids) + text.finish()
        texts.append((out, text.stopped))
    assert texts[0] == texts[1] == ("hello x and more words here", False)
