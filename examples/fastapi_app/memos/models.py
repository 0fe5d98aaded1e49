"""The app's request and response bodies."""

from __future__ import annotations

from pydantic import BaseModel, Field


class MemoIn(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    done: bool = False


class Memo(MemoIn):
    id: int
