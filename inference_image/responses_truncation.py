"""The Responses API's ``truncation: "auto"``: a conversation too long for the model's context
loses its oldest turns until its prompt, with room for the answer, fits.

What goes, oldest first: whole turns before the last user message (a user message with the
answers, calls and tool results after it; what comes before the first user message is one
turn), so a template that wants user and assistant to alternate still gets them so; then,
after the last user message, an agent's earlier steps (an assistant message with the tool
results that answer its calls). What never goes: system and developer messages (the
instructions), the last user message, and the newest step.
"""

from __future__ import annotations

from .protocol import ChatCompletionRequest, ChatMessage
from .serving import OpenAIServing

INSTRUCTIONS = ("system", "developer")


async def fitted(serving: OpenAIServing, chat: ChatCompletionRequest) -> ChatCompletionRequest:
    """``chat`` with the fewest oldest turns dropped that lets it fit the model's context,
    or with all those that may go when even that does not fit (the server then refuses it
    as it refuses any prompt too long)."""
    groups = droppable(chat.messages)
    best = without(chat, groups)
    low, high = 1, len(groups) - 1  # the fewest groups to drop: a binary search
    while low <= high:
        middle = (low + high) // 2
        candidate = without(chat, groups[:middle])
        if await _fits(serving, candidate):
            best, high = candidate, middle - 1
        else:
            low = middle + 1
    return best


def droppable(messages: list[ChatMessage]) -> list[list[int]]:
    """The indexes of the messages that may go, grouped as they go together, oldest first."""
    users = [i for i, message in enumerate(messages) if message.role == "user"]
    last_user = users[-1] if users else -1
    groups: list[list[int]] = []
    current: list[int] = []
    for i, message in enumerate(messages):
        if message.role in INSTRUCTIONS:
            continue
        if i == last_user:  # it stays, and ends the turn before it
            starts, keep = True, True
        else:
            starts = message.role == "user" if i < last_user else message.role != "tool"
            keep = False
        if starts and current:
            groups.append(current)
            current = []
        if not keep:
            current.append(i)
    if current and current[-1] < last_user:
        groups.append(current)
    # (a group after the last user message left open here is the newest step: it stays)
    return groups


def without(chat: ChatCompletionRequest, groups: list[list[int]]) -> ChatCompletionRequest:
    dropped = {i for group in groups for i in group}
    return chat.model_copy(update={"messages": [
        message for i, message in enumerate(chat.messages) if i not in dropped]})


async def _fits(serving: OpenAIServing, chat: ChatCompletionRequest) -> bool:
    """Whether the chat's prompt and its answer's tokens (``max_completion_tokens``, or at
    least one) fit the model's context, as ``request_checks.new_tokens`` counts them."""
    tools = [tool.model_dump(exclude_none=True) for tool in chat.tools or []] or None
    prompt = await serving.prompts.encode(serving.chat_text(chat, tools),
                                          add_special_tokens=False)
    info = serving.engine.info
    room = (info.max_context - len(prompt) if info.task == "text-generation"
            else info.max_context)
    return len(prompt) <= info.max_context and room >= (chat.max_completion_tokens or 1)
