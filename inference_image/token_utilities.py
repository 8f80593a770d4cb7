"""vLLM's token utilities, ``POST /tokenize`` and ``POST /detokenize``: what clients use to
count a prompt's tokens against the context, or to read ids back, with the served model's
own tokenizer and chat template."""

from __future__ import annotations

from .chat_prompt import template_of
from .protocol import ApiError, DetokenizeRequest, TokenizeRequest, TokenizeResponse
from .request_checks import check_model
from .serving import OpenAIServing


async def tokenize(serving: OpenAIServing, request: TokenizeRequest) -> TokenizeResponse:
    """The token ids a prompt, or a chat, is served as (a chat through the chat template,
    as /v1/chat/completions renders it)."""
    check_model(request.model, serving.served_names)
    if (request.prompt is None) == (request.messages is None):
        raise ApiError(400, "send either prompt or messages", param="prompt",
                       code="invalid_value")
    tokenizer = serving.engine.tokenizer
    if request.messages is not None:
        template_of(tokenizer, serving.model_name)
        tools = [t.model_dump(exclude_none=True) for t in request.tools or []] or None
        text = serving.chat_text(request, tools)
        special = bool(request.add_special_tokens)  # the template writes them
    else:
        text, special = request.prompt, request.add_special_tokens is not False
    ids = await serving.prompts.encode(text, add_special_tokens=special)
    strs = tokenizer.convert_ids_to_tokens(ids) if request.return_token_strs else None
    return TokenizeResponse(count=len(ids), max_model_len=serving.engine.info.max_context,
                            tokens=ids, token_strs=strs)


def detokenize(serving: OpenAIServing, request: DetokenizeRequest) -> dict[str, str]:
    """The text of token ids, or a 400 for an id outside the vocabulary."""
    check_model(request.model, serving.served_names)
    vocab = len(serving.engine.tokenizer)
    if any(not 0 <= t < vocab for t in request.tokens):
        raise ApiError(400, f"tokens must be token ids in [0, {vocab})", param="tokens",
                       code="invalid_value")
    return {"prompt": serving.engine.tokenizer.decode(request.tokens)}
