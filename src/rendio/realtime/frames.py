"""Phoenix channel messages as the Supabase clients frame them (SUPABASE-WIRE.md §B).

vsn 1.0.0 sends JSON objects `{topic, event, payload, ref, join_ref}` and receives
`{topic, event, payload, ref}`; vsn 2.0.0 sends and receives arrays
`[join_ref, ref, topic, event, payload]`. Refs are strings (supabase-swift drops numbers), so
they are passed back exactly as received.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

VERSIONS = ("1.0.0", "2.0.0")


class BadFrame(Exception):
    """A text frame that is not a Phoenix message."""


@dataclass(frozen=True)
class Message:
    topic: str
    event: str
    payload: dict[str, Any]
    ref: str | None = None
    join_ref: str | None = None


def _text_or_none(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str | int) and not isinstance(value, bool):
        return str(value)
    raise BadFrame("refs must be strings")


def decode(frame: str, vsn: str) -> Message:
    try:
        data = json.loads(frame)
    except (ValueError, RecursionError):
        raise BadFrame("not JSON") from None
    if vsn == "2.0.0":
        if not isinstance(data, list) or len(data) != 5:
            raise BadFrame("expecting [join_ref, ref, topic, event, payload]")
        join_ref, ref, topic, event, payload = data
    else:
        if not isinstance(data, dict):
            raise BadFrame("expecting {topic, event, payload, ref}")
        join_ref, ref = data.get("join_ref"), data.get("ref")
        topic, event, payload = data.get("topic"), data.get("event"), data.get("payload")
    if not isinstance(topic, str) or not isinstance(event, str):
        raise BadFrame("topic and event must be strings")
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise BadFrame("payload must be an object")
    return Message(topic, event, payload, _text_or_none(ref), _text_or_none(join_ref))


def encode(message: Message, vsn: str) -> str:
    if vsn == "2.0.0":
        data: Any = [
            message.join_ref,
            message.ref,
            message.topic,
            message.event,
            message.payload,
        ]
    else:
        data = {
            "topic": message.topic,
            "event": message.event,
            "payload": message.payload,
            "ref": message.ref,
        }
    return json.dumps(data, separators=(",", ":"))


def reply(request: Message, status: str, response: dict[str, Any]) -> Message:
    """The `phx_reply` to `request`: same topic and refs."""
    return Message(
        request.topic,
        "phx_reply",
        {"status": status, "response": response},
        request.ref,
        request.join_ref,
    )
