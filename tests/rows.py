"""Helpers to put raw messages into the default chat_messages source table of a test database."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID

from usage_etl import sample
from usage_etl.settings import Settings

CHAT = sa.table(
    "chat_messages",
    sa.column("id", UUID),
    sa.column("user_id", UUID),
    sa.column("conversation_id", UUID),
    sa.column("agent_id", UUID),
    sa.column("model", sa.Text),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("metadata", JSONB),
)


def uid(n: int) -> str:
    """A readable deterministic uuid: uid(7) == '00000000-0000-4000-8000-000000000007'."""
    return str(uuid.UUID(f"00000000-0000-4000-8000-{n:012d}"))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def anthropic(inp: int, out: int, cache_write: int = 0, cache_read: int = 0, status: str | None = None) -> dict:
    usage = {"input_tokens": inp, "output_tokens": out, "cache_creation_input_tokens": cache_write, "cache_read_input_tokens": cache_read}
    return {"usage": usage, **({"status": status} if status else {})}


def openai(prompt: int, completion: int, cached: int = 0, reasoning: int = 0) -> dict:
    return {
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": reasoning},
        }
    }


_counter = iter(range(1, 10**9))


def msg(user: int | None, at: datetime | None, metadata: dict | str | None, *, conv: int | None = 1, agent: int | None = 1, model: str | None = "claude-sonnet-4-20250514", id: int | None = None) -> dict:
    return {
        "id": uid(id if id is not None else 10**6 + next(_counter)),
        "user_id": uid(user) if user is not None else None,
        "conversation_id": uid(conv) if conv is not None else None,
        "agent_id": uid(agent) if agent is not None else None,
        "model": model,
        "created_at": at,
        "metadata": json.loads(metadata) if isinstance(metadata, str) else metadata,
    }


def insert(engine: sa.Engine, settings: Settings, rows: list[dict]) -> None:
    sample.ensure_source_table(engine, settings)
    with engine.begin() as conn:
        conn.execute(sa.insert(CHAT), rows)
