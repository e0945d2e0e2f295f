"""Detect each record's data format and convert it to one canonical form.

Five formats are accepted, and every record of a split must use the same one:

- chat: `{"messages": [{"role", "content"}, ...], "tools"?: [...]}`
- completions: `{"prompt": str, "completion": str}`
- text: `{"text": str}`
- alpaca: `{"instruction": str, "input"?: str, "output": str}`
- sharegpt: `{"conversations": [{"from", "value"}, ...]}`

All but `text` become a chat conversation, so masking and exact-match scoring
treat them alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlx_distributed_training.training.datasets.errors import DataError
from mlx_distributed_training.training.datasets.records import Record

FORMAT_KEYS = {
    "chat": ("messages",),
    "completions": ("prompt", "completion"),
    "text": ("text",),
    "alpaca": ("instruction", "output"),
    "sharegpt": ("conversations",),
}
ROLES = ("system", "user", "assistant", "tool")
SHAREGPT_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "tool": "tool",
    "function_call": "assistant",
    "observation": "tool",
}


@dataclass(frozen=True)
class Example:
    """One example in canonical form: a conversation or a plain text."""

    location: str
    messages: tuple[dict[str, Any], ...] | None = None
    tools: tuple[dict[str, Any], ...] | None = None
    text: str | None = None


def detect_format(record: Record) -> str:
    """Name the format of one record, raising when it matches none or several."""
    if not isinstance(record.value, dict):
        kind = type(record.value).__name__
        raise DataError(record.location, f"expected a JSON object, got {kind}")
    keys = set(record.value)
    matches = [
        name
        for name, required in FORMAT_KEYS.items()
        if all(key in keys for key in required)
    ]
    if len(matches) == 1:
        return matches[0]
    present = ", ".join(sorted(keys)) or "none"
    if not matches:
        expected = "; ".join(
            f"{name}: {'+'.join(required)}" for name, required in FORMAT_KEYS.items()
        )
        raise DataError(
            record.location,
            f"record matches no known format (keys: {present}); expected {expected}",
        )
    raise DataError(
        record.location,
        f"record matches several formats ({', '.join(matches)}); keys: {present}",
    )


def _string(record: Record, key: str, optional: bool = False) -> str:
    value = record.value.get(key)
    if value is None and optional:
        return ""
    if not isinstance(value, str):
        got = "missing" if value is None else type(value).__name__
        raise DataError(record.location, f"key {key!r}: expected a string, got {got}")
    return value


def _chat_messages(record: Record) -> tuple[dict[str, Any], ...]:
    messages = record.value["messages"]
    if not isinstance(messages, list) or not messages:
        raise DataError(
            record.location, "key 'messages': expected a non-empty list of messages"
        )
    checked = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise DataError(record.location, f"{where}: expected an object")
        role = message.get("role")
        if role not in ROLES:
            raise DataError(
                record.location,
                f"{where}.role: got {role!r}, expected one of {', '.join(ROLES)}",
            )
        content = message.get("content")
        if content is None and role == "assistant" and message.get("tool_calls"):
            content = ""
        if not isinstance(content, str):
            got = "missing" if content is None else type(content).__name__
            raise DataError(
                record.location, f"{where}.content: expected a string, got {got}"
            )
        checked.append({**message, "content": content})
    return tuple(checked)


def _sharegpt_messages(record: Record) -> tuple[dict[str, Any], ...]:
    turns = record.value["conversations"]
    if not isinstance(turns, list) or not turns:
        raise DataError(
            record.location, "key 'conversations': expected a non-empty list of turns"
        )
    messages = []
    for index, turn in enumerate(turns):
        where = f"conversations[{index}]"
        if not isinstance(turn, dict):
            raise DataError(record.location, f"{where}: expected an object")
        speaker = turn.get("from")
        if speaker not in SHAREGPT_ROLES:
            allowed = ", ".join(SHAREGPT_ROLES)
            raise DataError(
                record.location,
                f"{where}.from: got {speaker!r}, expected one of {allowed}",
            )
        value = turn.get("value")
        if not isinstance(value, str):
            raise DataError(record.location, f"{where}.value: expected a string")
        messages.append({"role": SHAREGPT_ROLES[speaker], "content": value})
    return tuple(messages)


def to_example(record: Record, data_format: str) -> Example:
    """Convert one record of a known format to its canonical `Example`."""
    location = record.location
    if data_format == "text":
        return Example(location, text=_string(record, "text"))
    if data_format == "completions":
        messages = (
            {"role": "user", "content": _string(record, "prompt")},
            {"role": "assistant", "content": _string(record, "completion")},
        )
        return Example(location, messages=messages)
    if data_format == "alpaca":
        prompt = _string(record, "instruction")
        extra = _string(record, "input", optional=True)
        if extra:
            prompt = f"{prompt}\n\n{extra}"
        messages = (
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": _string(record, "output")},
        )
        return Example(location, messages=messages)
    if data_format == "sharegpt":
        return Example(location, messages=_sharegpt_messages(record))

    tools = record.value.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise DataError(location, "key 'tools': expected a list of tool schemas")
    return Example(
        location,
        messages=_chat_messages(record),
        tools=tuple(tools) if tools else None,
    )


def parse_split(records: list[Record]) -> tuple[str, list[Example]]:
    """Detect the split's format from every record and convert them all.

    Raises a `DataError` at the first record whose format differs from the
    first record's.
    """
    first_format = detect_format(records[0])
    examples = []
    for record in records:
        data_format = detect_format(record)
        if data_format != first_format:
            raise DataError(
                record.location,
                f"record is in {data_format} format but the split started in "
                f"{first_format} format at {records[0].location}; mixed formats "
                "are not allowed",
            )
        examples.append(to_example(record, data_format))
    return first_format, examples
