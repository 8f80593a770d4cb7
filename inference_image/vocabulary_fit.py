"""Whether every token id the tokenizer can produce has a row in the model's embeddings.

A tokenizer given new tokens (chat markers such as ``<|im_start|>``) and saved with a model
that was never resized for them loads, and plain prompts run; the first prompt holding one
of those tokens fails inside the model ("index out of range in self" on CPU, a sticky
device-side assert on CUDA). Refused at load, the rollout sees a failed start instead. The
opposite, embeddings with more rows than the tokenizer has tokens (vocabularies padded to
a multiple of 64 or 128), is common and fine.
"""

from __future__ import annotations

from pathlib import Path

#: tokens beyond the embeddings named in the message
_NAMED = 5


def embedding_rows(model) -> list[tuple[str, int]]:
    """Each token-embedding table the tokenizer's ids index, by name, with its rows: the
    input embeddings, and a sequence-to-sequence model's encoder and decoder ones (most
    share one table; some have their own)."""
    tables = [("input embeddings", model.get_input_embeddings())]
    if getattr(model.config, "is_encoder_decoder", False):
        for part in ("encoder", "decoder"):
            getter = getattr(model, f"get_{part}", None)
            module = getter() if getter is not None else None
            if module is not None and hasattr(module, "get_input_embeddings"):
                tables.append((f"{part} embeddings", module.get_input_embeddings()))
    seen, rows = set(), []
    for name, table in tables:
        if table is None or id(table) in seen or not hasattr(table, "num_embeddings"):
            continue
        seen.add(id(table))
        rows.append((name, int(table.num_embeddings)))
    return rows


def tokens_beyond(tokenizer, rows: int) -> list[tuple[int, str]]:
    """The tokenizer's tokens (id, text), added ones included, whose ids are ``rows`` or
    more, by id."""
    return sorted((int(i), token) for token, i in tokenizer.get_vocab().items() if i >= rows)


def vocabulary_misfit(folder: Path, model, tokenizer) -> str | None:
    """Why ``tokenizer`` cannot be served with ``model`` (ids with no embedding), or None."""
    for name, rows in embedding_rows(model):
        beyond = tokens_beyond(tokenizer, rows)
        if not beyond:
            continue
        size = max(len(tokenizer), beyond[-1][0] + 1)
        named = ", ".join(f"{token!r} (id {i})" for i, token in beyond[:_NAMED])
        more = f" and {len(beyond) - _NAMED} more" if len(beyond) > _NAMED else ""
        count = "1 token has" if len(beyond) == 1 else f"{len(beyond)} tokens have"
        return (f"cannot serve {folder}: its tokenizer has {size} tokens but the model's "
                f"{name} have {rows} rows, so {count} no embedding "
                f"({named}{more}); a prompt holding one would fail every request. Tokens "
                "were added to the tokenizer without resizing the model: call "
                "model.resize_token_embeddings(len(tokenizer)) before save_pretrained (and "
                "train the new rows), or serve the tokenizer the model was trained with")
    return None
