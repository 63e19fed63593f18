"""How an OpenAI-style `messages` list maps onto a scope and a prompt: the one mapping, used
by the HTTP front and the SDK's `scope_from_messages`, so a conversation is one namespace
however it arrives.

- The leading system (and developer) messages, joined by a blank line, are the system
  prompt; a later one stays in place as a turn.
- The last message, a user's, is the prompt; its other fields (a `name`, say) are keyed as
  the generation parameter `extra["last_message"]`.
- The turns between are the history, each `(role, content)`, or `(role, <the whole message
  as canonical JSON>)` when it has fields besides role and content (tool calls,
  tool_call_id, a name): two conversations share an answer only if every turn is the same.
- Content given as a list of parts is its text parts joined by newlines.

A conversation is not `keyable` when it cannot be cached faithfully: a non-text part (an
image, audio), a last message that is not a user's (a tool result, an assistant prefill),
or an empty prompt.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from semcache.keys import canonical_json

#: The `GenerationParams.extra` key of the last user message's other fields.
LAST_MESSAGE_EXTRA = "last_message"


class MessagesError(ValueError):
    """`messages` is malformed; `where` names the offending part (`messages`, or the message
    whose content is wrong: `messages[2]`)."""

    def __init__(self, message: str, where: str = "messages") -> None:
        super().__init__(message)
        self.where = where


@dataclass(frozen=True, slots=True)
class Conversation:
    system: str
    history: tuple[tuple[str, str], ...]
    prompt: str
    #: The last user message's fields besides role and content (keyed as canonical JSON).
    last_message_fields: dict[str, Any]
    keyable: bool


def _text(content: Any, where: str) -> tuple[str, bool]:
    """(the text of a message's content, whether it had non-text parts)."""
    if content is None:
        return "", False
    if isinstance(content, str):
        return content, False
    if not isinstance(content, list):
        raise MessagesError(f"{where}.content must be a string or a list of parts", where)
    texts, other = [], False
    for i, part in enumerate(content):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise MessagesError(f"{where}.content[{i}] must be an object with a type", where)
        if part["type"] == "text":
            if not isinstance(part.get("text"), str):
                raise MessagesError(f"{where}.content[{i}].text must be a string", where)
            texts.append(part["text"])
        else:
            other = True
    return "\n".join(texts), other


def split_messages(messages: Any) -> Conversation:
    """The scope fields and prompt of a `messages` list; MessagesError when malformed."""
    if not isinstance(messages, list) or not messages:
        raise MessagesError("messages is required (a non-empty list)")
    system: list[str] = []
    turns: list[tuple[str, str, Mapping[str, Any]]] = []
    keyable = True
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise MessagesError(f"{where} must be an object with a role")
        text, other = _text(message.get("content"), where)
        keyable &= not other
        if message["role"] in ("system", "developer") and not turns:
            system.append(text)  # the leading instructions; later ones stay in place
        else:
            turns.append((message["role"], text, message))
    last: Mapping[str, Any] = turns[-1][2] if turns else {}
    if last.get("role") != "user":
        keyable, prompt, earlier = False, "", turns
    else:
        *earlier, (_, prompt, _) = turns
    history = tuple(
        (role, text if set(m) <= {"role", "content"} else canonical_json(m))
        for role, text, m in earlier
    )
    extra = {k: v for k, v in last.items() if k not in ("role", "content")} if keyable else {}
    return Conversation(
        system="\n\n".join(system),
        history=history,
        prompt=prompt,
        last_message_fields=extra,
        keyable=keyable and bool(prompt.strip()),
    )
