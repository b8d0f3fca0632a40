"""Errors as problem details (RFC 9457, `application/problem+json`): `type`, `title`, `status`, `detail`,
`instance`, and — where the client can fix something — `errors`, each naming the field (a JSON pointer
into the body) or the file and line. Every refusal a service raises on purpose maps to a 4xx here;
anything else is a 500 that says nothing of the internals."""

import logging
from http import HTTPStatus

from django.core.exceptions import ObjectDoesNotExist, PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError, IntegrityError
from django.http import Http404, JsonResponse
from ninja.errors import AuthenticationError, HttpError, Throttled
from ninja.errors import ValidationError as NinjaValidationError

from config.errors import AccreteError
from registry.errors import SelfApprovalError, TransitionError
from skills.parsing import JSONRefused
from skills.services import SelfApprovalRefused, SkillEditRefused, UploadRefused
from teams.permissions import RoleRequired
from tokens.services import TokenRefused
from webhooks.services import WebhookRefused
from workers.engine.contract.config import ConfigError

log = logging.getLogger(__name__)
PROBLEM_BASE = "/api/v1/problems/"  # + code: each problem type's URI answers with what it means
PROBLEM_TYPES = {
    "bad-request": "The body is not JSON (or not the multipart form the endpoint takes), or JSON a program should "
                   "not send (NaN, Infinity, NUL characters, lone surrogates, very long numbers, deep nesting).",
    "csrf-failed": "A browser-session call with an unsafe method needs the CSRF token (X-CSRFToken header).",
    "unauthenticated": "No valid credential: send Authorization: Bearer acc_… with a token that is neither "
                       "expired nor revoked, of an active user.",
    "rate-limited": "Too many calls for this token in the window of ACCRETE_API_RATE; retry after Retry-After.",
    "role-required": "Your role in the team is below what the action needs; the detail names the role.",
    "forbidden": "This action is not allowed for you.",
    "four-eyes": "The person who asked for a change cannot also approve it; another skill owner must.",
    "not-found": "No such object — or it belongs to a team you are not in (their existence is not disclosed).",
    "no-team": "You are in no team yet: a platform admin adds you to one.",
    "validation-failed": "A field is missing or of the wrong type or range; `errors` names each (a JSON pointer).",
    "invalid-config": "A training config field is unknown or out of range; `errors` points at it (config.<field>).",
    "invalid-value": "A value is refused by the service or cannot be stored (a NUL character, a number out of range).",
    "invalid-upload": "The uploaded file has problems; `errors` lists each with its file, line, field and fix. "
                      "Nothing was saved.",
    "invalid-webhook": "A webhook endpoint needs an http(s) URL and known event types.",
    "duplicate-upload": "The same content was uploaded before as the set named by `demonstration_set`.",
    "too-large": "The upload is over ACCRETE_UPLOAD_MAX_BYTES.",
    "upload-expired": "A validated upload was not confirmed within ACCRETE_UPLOAD_TTL_S: upload it again.",
    "upload-refused": "The upload was refused (a bad split seed, content changed since it was validated).",
    "token-refused": "A token or service account request that cannot be honoured (expiry, role, name).",
    "refused": "The rules refuse this transition now; the detail says why and what would be allowed.",
    "conflict": "Something saved meanwhile conflicts with this change: reload and try again.",
    "no-gate": "The version has no gate result yet.",
    "no-production": "There is no production model yet: import a base model first.",
    "artifact-tampered": "A stored file of the version does not match the sha256 recorded when it was written (the "
                         "detail names it): it is not served or exported. Restore it, or train the version again.",
    "artifact-deleted": "The version's files (or its merged weights) are no longer in the artifact store; the "
                        "retention policy keeps only a candidate's adapter, which part=adapter still exports.",
    "internal": "An error on the server's side; it was logged.",
}
CONTENT_TYPE = "application/problem+json"
NOT_FOUND = "There is nothing here — or it belongs to a team you are not in."


class Problem(Exception):
    """Raised by an endpoint to answer with a problem document."""

    def __init__(self, status: int, detail: str, *, code: str = "", errors: list | None = None, **extra):
        super().__init__(detail)
        self.status, self.detail, self.code, self.errors, self.extra = status, detail, code, errors, extra


def problem(request, status: int, detail: str, *, code: str = "", errors: list | None = None, **extra) -> JsonResponse:
    body = {"type": f"{PROBLEM_BASE}{code}" if code else "about:blank", "title": HTTPStatus(status).phrase,
            "status": status, "detail": detail, "instance": request.path}
    if code:
        body["code"] = code
    if errors:
        body["errors"] = errors
    body.update(extra)
    return JsonResponse(body, status=status, content_type=CONTENT_TYPE, json_dumps_params={"ensure_ascii": False})


def _pointer(loc) -> tuple[str, str]:
    """ninja's error location (("body", "payload", "config", "x") …) as (JSON pointer, dotted field name)."""
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "form", "file", "header", "payload")]
    return "#/" + "/".join(parts), ".".join(parts)


# exception class → (status, code); the first match wins (subclasses first)
_MAPPED = [
    (RoleRequired, 403, "role-required"),
    (SelfApprovalError, 403, "four-eyes"),
    (SelfApprovalRefused, 403, "four-eyes"),
    (TransitionError, 409, "refused"),
    (SkillEditRefused, 409, "refused"),
    (UploadRefused, 400, "upload-refused"),
    (TokenRefused, 400, "token-refused"),
    (WebhookRefused, 422, "invalid-webhook"),
    (PermissionDenied, 403, "forbidden"),
    (AccreteError, 400, "refused"),
]


def install(api) -> None:
    """Register the handlers on a NinjaAPI."""

    @api.exception_handler(Problem)
    def _problem(request, exc: Problem):
        return problem(request, exc.status, exc.detail, code=exc.code, errors=exc.errors, **exc.extra)

    @api.exception_handler(NinjaValidationError)
    def _invalid(request, exc: NinjaValidationError):
        errors = []
        for error in exc.errors:
            pointer, field = _pointer(error.get("loc", ()))
            errors.append({"pointer": pointer, "field": field, "message": error.get("msg", "invalid")})
        named = ", ".join(e["field"] or "the body" for e in errors[:5])
        return problem(request, 422, f"The request is not valid: check {named}.", code="validation-failed",
                       errors=errors)

    @api.exception_handler(ConfigError)
    def _config(request, exc: ConfigError):
        field = f"config.{exc.field}" if exc.field else "config"
        return problem(request, 422, str(exc), code="invalid-config",
                       errors=[{"pointer": "#/" + field.replace(".", "/"), "field": field, "message": str(exc)}])

    @api.exception_handler(DjangoValidationError)
    def _model_invalid(request, exc: DjangoValidationError):
        if hasattr(exc, "error_dict"):
            errors = [{"pointer": f"#/{name}", "field": name, "message": " ".join(messages)}
                      for name, messages in exc.message_dict.items()]
        else:
            errors = [{"pointer": "#/", "field": "", "message": m} for m in exc.messages]
        return problem(request, 422, "; ".join(e["message"] for e in errors), code="validation-failed", errors=errors)

    @api.exception_handler(AuthenticationError)
    def _unauthenticated(request, exc):
        response = problem(request, 401, "Authenticate with an API token (Authorization: Bearer acc_…) or a "
                           "browser session. A token that expired or was revoked no longer works: create a new "
                           "one under Settings → API tokens.", code="unauthenticated")
        response["WWW-Authenticate"] = 'Bearer realm="accrete"'
        return response

    @api.exception_handler(Throttled)
    def _throttled(request, exc: Throttled):
        wait = f" Retry in {exc.wait:.0f} s." if exc.wait else ""
        return problem(request, 429, f"Too many requests for this token (ACCRETE_API_RATE).{wait}", code="rate-limited")

    @api.exception_handler(Http404)
    def _not_found(request, exc):
        return problem(request, 404, NOT_FOUND, code="not-found")

    @api.exception_handler(ObjectDoesNotExist)
    def _no_object(request, exc):
        return problem(request, 404, NOT_FOUND, code="not-found")

    @api.exception_handler(HttpError)
    def _http(request, exc: HttpError):
        detail = str(exc)
        if isinstance(exc.__cause__, JSONRefused):
            detail = f"The request body is refused: {exc.__cause__}."
        elif exc.status_code == 400 and "parse" in detail.lower():
            detail = "The request body is not valid JSON (or not the multipart form this endpoint takes)."
        return problem(request, exc.status_code, detail, code="csrf-failed" if "CSRF" in detail else "bad-request")

    @api.exception_handler(DataError)
    def _unstorable(request, exc):
        return problem(request, 422, "A value in the request cannot be stored or looked up (a NUL character, a "
                       "number out of range): remove it.", code="invalid-value")

    @api.exception_handler(IntegrityError)
    def _conflict(request, exc):
        return problem(request, 409, "This conflicts with something saved meanwhile (a name already taken, a "
                       "concurrent change): reload and try again.", code="conflict")

    @api.exception_handler(Exception)
    def _any(request, exc: Exception):
        for kind, status, code in _MAPPED:
            if isinstance(exc, kind):
                return problem(request, status, str(exc), code=code)
        if isinstance(exc, ValueError):  # a scorer refusing its options, and the like: the message says why
            return problem(request, 422, str(exc), code="invalid-value")
        log.exception("API error on %s", request.path)
        return problem(request, 500, "Something went wrong on our side; it was logged. Try again, or tell a "
                       "platform admin with the time of the request.", code="internal")
