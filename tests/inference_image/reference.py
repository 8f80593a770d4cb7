"""Reference decoding for checks: the model run on the whole sequence, no cache, no engine."""

from __future__ import annotations

import torch


def next_token_logprobs(loaded, prompt: list[int], output: list[int]) -> torch.Tensor:
    """log_softmax of the logits that chose each token of ``output`` [len(output), V]."""
    model, device = loaded.model, loaded.device
    with torch.inference_mode():
        if model.config.is_encoder_decoder:
            start = model.config.decoder_start_token_id
            logits = model(input_ids=torch.tensor([prompt], device=device),
                           decoder_input_ids=torch.tensor([[start, *output[:-1]]],
                                                          device=device)).logits[0]
        else:
            ids = torch.tensor([prompt + output[:-1]], device=device)
            logits = model(input_ids=ids).logits[0, len(prompt) - 1:]
    return torch.log_softmax(logits.float(), dim=-1).cpu()


def penalized_greedy(loaded, prompt: list[int], n: int, frequency: float = 0.0,
                     presence: float = 0.0, bias: dict[int, float] | None = None) -> list[int]:
    """Greedy decoding with OpenAI's penalties and logit biases, one full forward per token."""
    output: list[int] = []
    for _ in range(n):
        logits = next_token_logprobs(loaded, prompt, [*output, 0])[-1]
        counts = torch.bincount(torch.tensor(output, dtype=torch.long),
                                minlength=logits.shape[-1]).float()
        logits = logits - counts * frequency - (counts > 0).float() * presence
        for token, b in (bias or {}).items():
            logits[token] += b
        output.append(int(logits.argmax()))
    return output


def greedy(loaded, prompt: list[int], n: int) -> list[int]:
    """Greedy decoding of one prompt alone with transformers' own generate()."""
    with torch.inference_mode():
        out = loaded.model.generate(torch.tensor([prompt], device=loaded.device),
                                    max_new_tokens=n, min_new_tokens=n, do_sample=False)
    start = 1 if loaded.model.config.is_encoder_decoder else len(prompt)
    return out[0, start:].tolist()


async def collect(stream) -> tuple[list[int], str | None]:
    """An engine stream's tokens and its finish reason."""
    tokens, finish = [], None
    async for event in stream:
        tokens += event.token_ids
        finish = event.finish_reason
    return tokens, finish
