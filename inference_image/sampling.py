"""Per-row sampling over a batch of logits: greedy, temperature, top-p, per-request seeds."""

from __future__ import annotations

import torch


def new_generator(seed: int | None, device: torch.device) -> torch.Generator:
    """A generator for one request: seeded when the client asked for determinism."""
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


def sample(
    logits: torch.Tensor,
    temperatures: list[float],
    top_ps: list[float],
    generators: list[torch.Generator],
) -> list[int]:
    """Pick one token per row of ``logits`` [B, V].

    Rows with temperature 0 take the argmax; the rest are sampled from the softmax of
    logits / temperature, restricted to the smallest set of tokens whose probability
    reaches top_p, drawing with the row's own generator so a seed reproduces a completion
    whatever else is in the batch.
    """
    chosen = torch.argmax(logits, dim=-1)
    sampled = [i for i, t in enumerate(temperatures) if t > 0]
    if not sampled:
        return chosen.tolist()
    index = torch.tensor(sampled, device=logits.device)
    temps = torch.tensor([temperatures[i] for i in sampled], device=logits.device)
    scaled = logits.index_select(0, index).float() / temps[:, None]
    probs = torch.softmax(scaled, dim=-1)
    ps = [top_ps[i] for i in sampled]
    if any(p < 1.0 for p in ps):
        sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
        cumulative = torch.cumsum(sorted_probs, dim=-1)
        top_p = torch.tensor(ps, device=logits.device, dtype=probs.dtype)[:, None]
        # Drop a token when the tokens before it already reach top_p; the first always stays.
        drop = (cumulative - sorted_probs) >= top_p
        sorted_probs = sorted_probs.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    # One draw per row with that row's generator; read back together (one sync on a GPU).
    draws = torch.cat([torch.multinomial(probs[row], 1, generator=generators[i])
                       for row, i in enumerate(sampled)])
    out = chosen.tolist()
    for i, token in zip(sampled, draws.tolist(), strict=True):
        out[i] = token
    return out
