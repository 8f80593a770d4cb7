"""Several answers to one prompt of a sequence-to-sequence model (``n``): the prompt is
encoded once and its states copied to the twins, which then decode as if alone."""

from __future__ import annotations

import torch

from llmcloud.inference_image.batch_seq2seq import Seq2SeqBatch


def test_twins_are_encoded_once_and_decode_as_alone(seq2seq):
    model, tokenizer = seq2seq.model, seq2seq.tokenizer
    house = tokenizer("translate English to French: the house is blue")["input_ids"]
    hello = tokenizer("hello")["input_ids"]
    encoded: list[int] = []
    hook = model.get_encoder().register_forward_hook(
        lambda module, args, kwargs, out: encoded.append(kwargs["input_ids"].shape[0]),
        with_kwargs=True)
    try:
        batch = Seq2SeqBatch(model, seq2seq.device, tokenizer.pad_token_id)
        with torch.inference_mode():
            first = batch.prefill([house, hello, house])
            step = batch.decode([int(t) for t in first.argmax(-1)])
    finally:
        hook.remove()
    assert encoded == [2]  # two distinct prompts, three rows
    for row, prompt in ((0, house), (1, hello), (2, house)):
        alone = Seq2SeqBatch(model, seq2seq.device, tokenizer.pad_token_id)
        with torch.inference_mode():
            alone_first = alone.prefill([prompt])
            alone_step = alone.decode([int(alone_first.argmax(-1))])
        torch.testing.assert_close(first[row], alone_first[0], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(step[row], alone_step[0], rtol=1e-4, atol=1e-5)
