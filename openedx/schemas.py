"""Request and response bodies of the Open edX backend, as edx-proctoring's REST client sends and reads them.

edX sends more than we keep (its exam serializer's fields, a learner's name and email): bodies ignore unknown
fields, and an attempt keeps only the learner's (obscured) user id.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ingest.schemas import MediaOut


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["JWT"] = "JWT"
    expires_in: int = Field(description="seconds the token works")
    scope: str = ""


class ConfigOut(BaseModel):
    name: str
    rules: dict[str, str] = Field(description="the rules an exam may set, machine key: human text")
    instructions: list[str]
    download_url: str = Field(description="the recorder page; edX adds attempt=<attempt id>")


class ExamIn(BaseModel):
    """An exam as edX saves it (`ProctoredExamJSONSafeSerializer` plus rules and the review policy)."""

    model_config = ConfigDict(extra="ignore")
    id: int = Field(description="the LMS's exam id")
    course_id: str = Field(max_length=255)
    exam_name: str | None = Field(default=None, max_length=300)
    name: str | None = Field(default=None, max_length=300, description="accepted for exam_name")
    rules: dict[str, Any] | None = Field(default=None, description="rule key: true/false; absent keeps the rules")
    is_practice_exam: bool | None = None
    is_practice: bool | None = Field(default=None, description="accepted for is_practice_exam")
    is_proctored: bool = True
    rule_summary: str | None = None

    @property
    def title(self) -> str:
        return self.exam_name or self.name or ""

    @property
    def practice(self) -> bool:
        return bool(self.is_practice_exam if self.is_practice_exam is not None else self.is_practice)


class ExamOut(BaseModel):
    id: str = Field(description="our exam id: edX keeps it as the exam's external_id")
    course_id: str
    name: str
    rules: dict[str, bool]
    is_practice: bool
    is_proctored: bool


class AttemptIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    user_id: str = Field(min_length=1, max_length=128, description="edX's obscured user id")
    status: str = "created"


class AttemptCreated(BaseModel):
    id: str = Field(description="our attempt id: edX keeps it as the attempt's external_id")
    status: str


class AttemptOut(BaseModel):
    id: str
    status: str
    instructions: list[str]
    download_url: str


class AttemptPatch(BaseModel):
    model_config = ConfigDict(extra="ignore")
    status: Literal["started", "submitted", "error"]


class Deleted(BaseModel):
    status: Literal["deleted"] = "deleted"


class RecorderSession(BaseModel):
    """The session the recorder uploads to, and a fresh token that opens only that session's uploads."""

    session_id: str
    upload_token: str = Field(description="send as 'Authorization: Bearer ...' to the /v1 upload routes")
    expires_at: datetime
    record_screen: bool
    media: list[MediaOut]


class AttemptStatus(BaseModel):
    status: str = Field(description="the recorder stops and completes its uploads at submitted or error")
