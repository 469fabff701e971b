"""The JSON request bodies of the operators' HTTP API, one pydantic model each.

A handler reads its body with ``parse(request, Model)``: a body that is not JSON, too large or
too slow answers 400/413/408 as ``read_json`` says; one that is not the model answers 400 with
the model's sentence for the first field found wrong (``problems``), else its ``shape``. Keys
a model does not name are ignored (the console sends ``actor`` with some, read by
``actor_of``), and types are strict: ``"1"`` is not a version, ``1`` is not a text.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, TypeVar

from aiohttp import web
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from bridge.reply.approval import REPLY_DECISIONS
from bridge.web.server import json_exception, read_json
from schemas.states import Decision
from schemas.vocab import Category


class Body(BaseModel):
    """A request body: strict types, unknown keys ignored."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    shape: ClassVar[str] = "body must be a JSON object"  # what the body must look like
    problems: ClassVar[dict[str, str]] = {}  # field -> what to say when it is wrong

    @classmethod
    def explain(cls, exc: ValidationError) -> str:
        """The sentence for the first problem pydantic found."""
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        if first["type"] == "missing":
            return cls.shape
        if field in cls.problems:
            return cls.problems[field]
        if first["type"] == "value_error":  # a model validator's own sentence
            return str(first["ctx"]["error"])
        return cls.shape


B = TypeVar("B", bound=Body)


def check(model: type[B], body: Any) -> B:
    """``body`` (decoded JSON) as ``model``; a 400 ``HTTPException`` with the reason otherwise."""
    if not isinstance(body, dict):
        raise json_exception(web.HTTPBadRequest, model.shape)
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise json_exception(web.HTTPBadRequest, model.explain(exc)) from None


async def parse(request: web.Request, model: type[B], limit: int = 64 * 1024) -> B:
    """The request's JSON body as ``model`` (see the module's docstring)."""
    return check(model, await read_json(request, limit=limit))


# ---------------------------------------------------------------------- approvals (api.py)
class ShownDraft(Body):
    reply_id: str = Field(min_length=1, max_length=200)
    version: int = Field(ge=1)
    text_sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")


class BulkApproval(Body):
    """``POST /api/approvals/bulk``: the template drafts to approve, each as it was shown
    (``bridge/reply/approval.py``, ``decide_many``)."""

    shape: ClassVar[str] = (
        'body must be {"items": [{"reply_id": ..., "version": N, "text_sha256": ...}, ...]}'
        " (1 to 100 drafts)"
    )

    items: list[ShownDraft] = Field(min_length=1, max_length=100)


class ReplyDecision(Body):
    """``POST /api/approvals/{reply_id}`` (``bridge/reply/approval.py`` says what it does)."""

    shape: ClassVar[str] = 'body must be {"decision": ..., "actor": ..., "text"?: ...}'
    problems: ClassVar[dict[str, str]] = {
        "decision": "decision must be approve|edit|reject and actor non-empty",
        "text": "text must be the reply's non-empty text",
        "reason": "reason must be a string of at most 500 characters",
        "version": "version must be the draft's version (a positive integer)",
        "text_sha256": "text_sha256 must be the hex SHA-256 of the draft's text",
    }

    decision: Decision = Field(strict=False)  # the enum's value, as text
    text: str | None = None
    reason: str | None = Field(default=None, max_length=500)
    version: int | None = Field(default=None, ge=1)
    text_sha256: str | None = None

    @field_validator("decision")
    @classmethod
    def _a_reply_decision(cls, value: Decision) -> Decision:
        if value not in REPLY_DECISIONS:  # the others settle ticket creates
            raise ValueError(value)
        return value

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError(value)
        return value

    @model_validator(mode="after")
    def _edit_has_text(self) -> ReplyDecision:
        if self.decision == Decision.EDIT and self.text is None:
            raise ValueError("edit needs the new text")
        return self


class IncidentSplit(Body):
    """``POST /api/incidents/{incident_id}/split``: a case taken out of its incident."""

    shape: ClassVar[str] = 'body must be {"inquiry_id": "..."}'
    problems: ClassVar[dict[str, str]] = {"inquiry_id": "inquiry_id must be a case's inquiry id"}

    inquiry_id: str = Field(min_length=1, max_length=200)


class IncidentMerge(Body):
    """``POST /api/incidents/{incident_id}/merge``: another incident joined to this one."""

    shape: ClassVar[str] = 'body must be {"incident_id": "..."}'
    problems: ClassVar[dict[str, str]] = {"incident_id": "incident_id must be an incident's id"}

    incident_id: str = Field(min_length=1, max_length=200)


class PublicAnswer(Body):
    """``POST /api/incidents/{incident_id}/answered``: the surge's public answer was given."""

    shape: ClassVar[str] = 'body must be {"link"?: "..."}'
    problems: ClassVar[dict[str, str]] = {"link": "link must be the public answer's address"}

    link: str | None = Field(default=None, max_length=2000)


class Settlement(Body):
    """``POST /api/reconciliation/{inquiry_id}``: an uncertain create settled."""

    shape: ClassVar[str] = 'body must be {"action": ..., "ticket_id"?: ...}'
    problems: ClassVar[dict[str, str]] = {
        "action": "action must be attach|not_created",
        "ticket_id": "attach needs the ticket_id found in the ticket system",
    }

    action: Literal["attach", "not_created"]
    ticket_id: Any = None  # checked below: only an attach reads it

    @model_validator(mode="after")
    def _attach_names_a_ticket(self) -> Settlement:
        if self.action == "attach" and (
            not isinstance(self.ticket_id, str) or not self.ticket_id.strip()
        ):
            raise ValueError("attach needs the ticket_id found in the ticket system")
        return self


# A case action's reason (转派, 退单, 延期, 督办): stripped, then 1-500 characters, so one of
# blanks only is no reason and the handler gets it ready to record.
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


class EditingMark(Body):
    """``POST /api/approvals/{reply_id}/editing``: the approver started or stopped editing."""

    shape: ClassVar[str] = 'body must be {"editing": true|false}'
    editing: bool


class Reroute(Body):
    """``POST /api/cases/{inquiry_id}/reroute``: 转派 to another department, with a reason."""

    shape: ClassVar[str] = 'body must be {"department": "...", "reason": "..."}'
    problems: ClassVar[dict[str, str]] = {
        "department": "department must be a configured department's id",
        "reason": "reason must say why (1-500 characters)",
    }

    department: str = Field(min_length=1, max_length=100)
    reason: Reason


class CaseReturn(Body):
    """``POST /api/cases/{inquiry_id}/return``: 退单, with the reason (required)."""

    shape: ClassVar[str] = 'body must be {"reason": "..."}'
    problems: ClassVar[dict[str, str]] = {"reason": "reason must say why (1-500 characters)"}

    reason: Reason


class Escalation(Body):
    """``POST /api/escalations/{inquiry_id}``: 督办, with the reason (required)."""

    shape: ClassVar[str] = 'body must be {"reason": "..."}'
    problems: ClassVar[dict[str, str]] = {"reason": "reason must say why (1-500 characters)"}

    reason: Reason


class CaseNoteBody(Body):
    """``POST /api/cases/{inquiry_id}/notes``: an internal note (never public).
    ``note_id`` (optional) makes a retried request record the note once."""

    shape: ClassVar[str] = 'body must be {"text": "...", "note_id"?: "..."}'
    problems: ClassVar[dict[str, str]] = {
        "text": "text must be the note (1-2000 characters)",
        "note_id": "note_id must be 1-100 characters",
    }

    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
    note_id: str | None = Field(default=None, min_length=1, max_length=100)


class ExtensionRequest(Body):
    """``POST /api/cases/{inquiry_id}/extension``: 延期 with the new deadline and a reason."""

    model_config = ConfigDict(strict=False, extra="ignore", frozen=True)  # ISO datetimes
    shape: ClassVar[str] = 'body must be {"new_deadline": "<ISO 8601>", "reason": "..."}'
    problems: ClassVar[dict[str, str]] = {
        "new_deadline": "new_deadline must be an ISO 8601 time with its offset",
        "reason": "reason must say why (1-500 characters)",
    }

    new_deadline: AwareDatetime
    reason: Reason


class ExtensionDecision(Body):
    """``POST /api/cases/{inquiry_id}/extension/{extension_id}``: an approver's decision."""

    shape: ClassVar[str] = 'body must be {"approve": true|false}'
    approve: bool


# ---------------------------------------------------------------------- console.py
class DeadLetterAction(Body):
    """``POST /api/dead-letters/{stage}/replay|drop``."""

    shape: ClassVar[str] = 'body must be {"message_id": "..."}'
    problems: ClassVar[dict[str, str]] = {"message_id": shape}

    message_id: str = Field(min_length=1)


# ---------------------------------------------------------------------- triage_review.py
class ReviewCheck(Body):
    """``POST /api/triage/review/{inquiry_id}``: a category, or (a flood hold) dismissed."""

    shape: ClassVar[str] = 'body must be {"category": ...} or {"dismiss": true}'
    problems: ClassVar[dict[str, str]] = {
        "category": f"category must be one of {', '.join(c.value for c in Category)}",
    }

    category: Category | None = Field(default=None, strict=False)
    dismiss: Any = None  # only ``true`` dismisses; anything else asks for a category

    @property
    def dismissed(self) -> bool:
        return self.dismiss is True

    @model_validator(mode="before")
    @classmethod
    def _category_is_text(cls, data: Any) -> Any:
        # strict=False lets "other" become Category.OTHER; a number must not
        if isinstance(data, dict) and data.get("dismiss") is not True:
            if "category" not in data:
                raise ValueError(cls.shape)
            if not isinstance(data["category"], str):
                raise ValueError(cls.problems["category"])
        return data


# ---------------------------------------------------------------------- operators.py
class SignIn(Body):
    """``POST /api/session``."""

    shape: ClassVar[str] = 'body must be {"name": "...", "password": "..."}'

    name: str
    password: str


# ---------------------------------------------------------------------- credentials.py
class NewToken(Body):
    """``POST /api/accounts/{adapter}/{handle}/token``."""

    shape: ClassVar[str] = 'body must be {"token": "<new token>"} (printable ASCII)'

    token: str


class NewCredentials(RootModel[dict[str, Any]]):
    """``POST /api/ticket-systems/{department}/credentials``: the ticket system's fields, by
    name (which ones, and their form, are checked by ``bridge/runtime/credentials.py``)."""

    model_config = ConfigDict(strict=True, frozen=True)
