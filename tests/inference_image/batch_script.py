"""Driving a running batch by hand: rows join at given steps and leave when done."""

from __future__ import annotations

import torch


def decode_with_joins(batch, prompts: list[list[int]], lengths: list[int],
                      joins: dict[int, list[int]], steps: int = 40) -> list[list[int]]:
    """Greedy tokens of every prompt, decoded together in ``batch``: prompts ``joins[s]``
    are prefilled at step ``s``, and a row leaves the step it reaches its length."""
    out: dict[int, list[int]] = {}
    order: list[int] = []
    with torch.inference_mode():
        for step in range(steps):
            if step in joins:
                logits = batch.prefill([prompts[i] for i in joins[step]])
                for i, token in zip(joins[step], logits.argmax(-1).tolist(), strict=True):
                    order.append(i)
                    out[i] = [token]
            alive = [row for row, i in enumerate(order) if len(out[i]) < lengths[i]]
            batch.keep(alive)
            order = [order[row] for row in alive]
            if not order and step > max(joins):
                break
            if order:
                logits = batch.decode([out[i][-1] for i in order])
                for i, token in zip(order, logits.argmax(-1).tolist(), strict=True):
                    out[i].append(token)
    return [out[i] for i in range(len(prompts))]
