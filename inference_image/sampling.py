"""Per-row sampling over a batch of logits: penalties and biases, greedy, temperature,
min-p, top-k and top-p, per-request seeds, and the log probabilities clients can ask for."""

from __future__ import annotations

import torch

from .engine import SamplingParams, TokenLogprob


def new_generator(seed: int | None, device: torch.device) -> torch.Generator:
    """A generator for one request: seeded when the client asked for determinism."""
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


# Temperatures below this are greedy (vLLM's bound): dividing by 1e-200 overflows the
# logits to inf, and the softmax of inf is NaN, which would fail the whole batch's step.
GREEDY_BELOW = 1e-5


def sample(
    logits: torch.Tensor,
    temperatures: list[float],
    top_ps: list[float],
    generators: list[torch.Generator],
    top_ks: list[int] | None = None,
    min_ps: list[float] | None = None,
) -> list[int]:
    """Pick one token per row of ``logits`` [B, V].

    Rows with temperature 0 (below ``GREEDY_BELOW``) take the argmax; the rest are sampled
    from the softmax of
    logits / temperature, restricted (in vLLM's order) to the tokens at least min_p times
    as likely as the likeliest, then to the top_k likeliest (0: all), then to the smallest
    set whose probability reaches top_p, drawing with the row's own generator so a seed
    reproduces a completion whatever else is in the batch.
    """
    chosen = torch.argmax(logits, dim=-1)
    sampled = [i for i, t in enumerate(temperatures) if t >= GREEDY_BELOW]
    if not sampled:
        return chosen.tolist()
    index = torch.tensor(sampled, device=logits.device)
    temps = torch.tensor([temperatures[i] for i in sampled], device=logits.device)
    scaled = logits.index_select(0, index).float() / temps[:, None]
    # Overflowed logits (an extreme penalty, a half-precision model's NaN) must not fail the
    # step, and with it every request in the batch: +inf is the likeliest, NaN never drawn,
    # and a row left with nothing to draw from takes its argmax.
    scaled = torch.nan_to_num(scaled, nan=float("-inf"), posinf=torch.finfo(scaled.dtype).max)
    if min_ps and any(min_ps[i] > 0 for i in sampled):
        probs = torch.softmax(scaled, dim=-1)
        floor = torch.tensor([min_ps[i] for i in sampled], device=logits.device)[:, None]
        scaled = scaled.masked_fill(probs < probs.amax(-1, keepdim=True) * floor,
                                    float("-inf"))
    if top_ks and any(top_ks[i] > 0 for i in sampled):
        ks = [min(top_ks[i], scaled.shape[-1]) for i in sampled]
        kth = scaled.topk(max(ks), dim=-1).values  # [rows, max k], descending
        at = torch.tensor([k - 1 if k > 0 else 0 for k in ks], device=logits.device)
        cut = kth.gather(1, at[:, None])
        cut[torch.tensor([k <= 0 for k in ks], device=logits.device)] = float("-inf")
        scaled = scaled.masked_fill(scaled < cut, float("-inf"))
    probs = torch.softmax(scaled, dim=-1)
    # (without a branch, so a GPU is not made to wait here)
    empty = ~torch.isfinite(probs).all(dim=-1, keepdim=True)
    probs = torch.where(empty, 0.0, probs).scatter_add_(
        1, chosen.index_select(0, index)[:, None], empty.to(probs.dtype))
    ps = [top_ps[i] for i in sampled]
    if any(p < 1.0 for p in ps):
        sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
        cumulative = torch.cumsum(sorted_probs, dim=-1)
        # (a row's top_p of 1 is off, whatever the others': its float32 cumulative sum can
        # reach 1 before the end of its vocabulary, which dropped the tokens after)
        top_p = torch.tensor([p if p < 1.0 else float("inf") for p in ps],
                             device=logits.device, dtype=probs.dtype)[:, None]
        # Drop a token when the tokens before it already reach top_p; the first always stays.
        drop = (cumulative - sorted_probs) >= top_p
        # (said outright: a top_p too small for the dtype rounds to 0, which drops it too)
        drop[:, 0] = False
        sorted_probs = sorted_probs.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    # One draw per row with that row's generator; read back together (one sync on a GPU).
    draws = torch.cat([torch.multinomial(probs[row], 1, generator=generators[i])
                       for row, i in enumerate(sampled)])
    out = chosen.tolist()
    for i, token in zip(sampled, draws.tolist(), strict=True):
        out[i] = token
    return out


def adjust_logits(logits: torch.Tensor, params: list[SamplingParams],
                  outputs: list[list[int]],
                  prompts: list[list[int]] | None = None) -> torch.Tensor:
    """``logits`` [B, V] with each row's logit biases, then its repetition penalty (over
    ``prompts`` and ``outputs``), as vLLM and Hugging Face do, then its presence and
    frequency penalties (counted over ``outputs``, the tokens that row generated), as OpenAI
    defines them, and vLLM's bad words and allowed tokens (the others' logits -inf). Returns
    ``logits`` itself when no row asks for any, else an adjusted float copy."""
    rows = [i for i, p in enumerate(params) if p.adjusts_logits]
    if not rows:
        return logits
    adjusted = logits.float()  # a copy for 16-bit logits; cloned below for float32 ones
    if adjusted is logits:
        adjusted = logits.clone()
    vocab = logits.shape[-1]
    for i in rows:
        p = params[i]
        # The bias first, then the penalties, as vLLM (and generate()'s sequence_bias) order
        # them: a biased token already seen has (logit + bias) / repetition_penalty.
        # Ids past the model's output layer (a tokenizer's extra entries) cannot be sampled.
        biases = [(t, b) for t, b in p.logit_bias if t < vocab]
        if biases:
            ids = torch.tensor([t for t, _ in biases], device=logits.device)
            bias = torch.tensor([b for _, b in biases], device=logits.device,
                                dtype=adjusted.dtype)
            adjusted[i].index_add_(0, ids, bias)
        if p.repetition_penalty != 1.0:
            seen = torch.tensor([*(prompts[i] if prompts else ()), *outputs[i]],
                                dtype=torch.long, device=logits.device)
            seen = torch.unique(seen[seen < vocab])
            row = adjusted[i].index_select(0, seen)
            penalized = torch.where(row > 0, row / p.repetition_penalty,
                                    row * p.repetition_penalty)
            adjusted[i].index_copy_(0, seen, penalized)
        if (p.presence_penalty or p.frequency_penalty) and outputs[i]:
            seen = torch.tensor(outputs[i], device=logits.device)
            counts = torch.bincount(seen, minlength=vocab)[:vocab].to(adjusted.dtype)
            adjusted[i] -= counts * p.frequency_penalty + (counts > 0) * p.presence_penalty
        banned = [words[-1] for words in p.bad_words_ids
                  if words[-1] < vocab and _ends_with(outputs[i], words[:-1])]
        allowed = [t for t in p.allowed_token_ids if t < vocab]
        if banned and allowed and set(allowed) <= set(banned):
            banned = []  # something must be sampled: the allowed tokens win
        if banned:
            adjusted[i, torch.tensor(banned, device=logits.device)] = float("-inf")
        if allowed:
            keep = torch.full((vocab,), float("-inf"), dtype=adjusted.dtype,
                              device=logits.device)
            keep[torch.tensor(allowed, device=logits.device)] = 0.0
            adjusted[i] += keep
    return adjusted


def _ends_with(output: list[int], prefix: tuple[int, ...]) -> bool:
    return not prefix or tuple(output[-len(prefix):]) == prefix


def forbid(logits: torch.Tensor, rows: list[int],
           token_ids: list[list[int]]) -> torch.Tensor:
    """A copy of ``logits`` [B, V] in which each of ``rows`` cannot pick its ``token_ids``
    (ids past the output layer are left out)."""
    out = logits.clone()
    vocab = logits.shape[-1]
    for row, ids in zip(rows, token_ids, strict=True):
        ids = [t for t in ids if t < vocab]
        if ids:
            out[row, torch.tensor(ids, device=logits.device)] = float("-inf")
    return out


#: the lowest log probability reported (vLLM's, in its OpenAI server)
LOGPROB_FLOOR = -9999.0


def token_logprobs(logits: torch.Tensor, rows: list[int], chosen: list[int],
                   top: list[int]) -> list[TokenLogprob]:
    """For each of ``rows`` of ``logits`` [B, V]: the log probability of its ``chosen``
    token and of its ``top`` most likely tokens, most likely first (one read back)."""
    index = torch.tensor(rows, device=logits.device)
    logprobs = torch.log_softmax(logits.index_select(0, index).float(), dim=-1)
    # vLLM's floor: a token a model masks (a -inf logit) or an overflowed row (NaN) has no
    # JSON number; -Infinity broke a stream's JSON and a whole answer's was a 500
    logprobs = torch.nan_to_num(logprobs, nan=LOGPROB_FLOOR).clamp(min=LOGPROB_FLOOR)
    picked = logprobs.gather(1, torch.tensor(chosen, device=logits.device)[:, None])[:, 0]
    best_lp, best_ids = logprobs.topk(min(max(top), logprobs.shape[-1]), dim=-1)
    picked, best_lp, best_ids = picked.tolist(), best_lp.tolist(), best_ids.tolist()
    return [TokenLogprob(token, lp, tuple(zip(ids[:n], lps[:n], strict=True)))
            for token, lp, ids, lps, n in zip(chosen, picked, best_ids, best_lp, top,
                                             strict=True)]
