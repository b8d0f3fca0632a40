"""The Accrete HTTP API (/api/v1) as one method per call: JSON in, JSON out. An answer that is not a
success raises ApiError carrying the problem document's `detail`, `code` and `errors`; a server that
cannot be reached raises ApiError with no status. Nothing here prints."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
PAGE = 200  # the server's largest page (ACCRETE_API_PAGE_MAX's default); a smaller limit it answers is used
REFUSED = {400, 409, 410, 413, 422}  # the server understood the request and said no to what it asked
# An export's first byte comes only after the server has hashed every file of the version (gigabytes at 7B).
EXPORT_TIMEOUT = httpx.Timeout(60.0, read=1800.0)


class UsageError(Exception):
    """The command cannot run as configured (a missing variable, an unreadable file): exit 2."""


class ApiError(Exception):
    """An error answer (a problem document: RFC 9457), or no answer at all (`status` None)."""

    def __init__(self, status: int | None, detail: str, *, code: str = "", errors: list | None = None,
                 body: dict | None = None):
        super().__init__(detail)
        self.status, self.detail, self.code = status, detail, code
        self.errors = errors or []
        self.body = body or {}

    @property
    def exit_code(self) -> int:
        """1 when the request was refused on its merits (an invalid file or config, a refused transition);
        2 when it could not be made (network, authentication, permission, not found, server error)."""
        return 1 if self.status in REFUSED else 2

    def explain(self) -> list[str]:
        """What to tell the user: the detail, then one line per entry of `errors` — FILE:LINE: message — fix
        for a problem in an uploaded file, FIELD: message for a field of the request."""
        only = self.errors[0] if len(self.errors) == 1 and isinstance(self.errors[0], dict) else {}
        if only.get("field") and only.get("message") == self.detail:
            return [f"{only['field']}: {self.detail}"]  # one field, said once
        lines = [self.detail]
        if self.status == 401:
            lines[0] += " Check ACCRETE_TOKEN: it must hold a valid, unrevoked token (acc_…)."
        lines.extend(problem_line(error) for error in self.errors)
        if self.body.get("problems_omitted"):
            lines.append(f"… and {self.body['problems_omitted']} more problem(s).")
        return lines


def problem_line(error) -> str:
    """One entry of a problem's `errors` (or of an upload report's `problems`) as a line: FILE:LINE: message
    — fix for a problem in a file, FIELD: message for a field of the request."""
    if not isinstance(error, dict):
        return str(error)
    message = str(error.get("message", ""))
    if error.get("file"):
        where = f"{error['file']}:{error['line']}" if error.get("line") else error["file"]
        # the server's message names its line itself ("line 3, field …"): FILE:LINE already says it
        said = f"line {error.get('line')}"
        if error.get("line") and message.startswith((said + ", ", said + ": ")):
            message = message[len(said) + 2:]
        return f"{where}: {message}" + (f" — {error['fix']}" if error.get("fix") else "")
    return f"{error['field']}: {message}" if error.get("field") else message


class Api:
    """A session with the API at `url` (the server's root, e.g. http://127.0.0.1:8000), as `token`."""

    def __init__(self, url: str, token: str, *, timeout: float = 60.0):
        self.url = url.rstrip("/").removesuffix("/api/v1")
        self.http = httpx.Client(base_url=self.url + "/api/v1", timeout=timeout,
                                 headers={"Authorization": f"Bearer {token}", "User-Agent": "accrete-cli",
                                          "Accept": "application/json"})

    @classmethod
    def from_env(cls, environ=os.environ) -> Api:
        """ACCRETE_URL (default http://127.0.0.1:8000) and ACCRETE_TOKEN (required)."""
        token = environ.get("ACCRETE_TOKEN", "").strip()
        if not token:
            raise UsageError("ACCRETE_TOKEN is not set: create a token under Settings → API tokens in the web "
                             "app (it starts with acc_) and export ACCRETE_TOKEN=acc_….")
        return cls(environ.get("ACCRETE_URL", "").strip() or DEFAULT_URL, token)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- the calls ----------------------------------------------------------------------------------

    def me(self) -> dict:
        return self._call("GET", "/me")

    def skills(self) -> list[dict]:
        return self._all("/skills")

    def upload(self, skill: str, file: Path, *, eval_file: Path | None = None, seed: int | None = None,
               confirm: bool = True) -> dict:
        """The validation report; with `confirm`, the saved set is its `demonstration_set`, else `token`
        names the pending upload (see upload_confirm)."""
        data = {"confirm": "true" if confirm else "false"}
        if seed is not None:
            data["seed"] = str(seed)
        with ExitStack() as stack:
            files = {"file": (file.name, stack.enter_context(_open(file)))}
            if eval_file is not None:
                files["eval_file"] = (eval_file.name, stack.enter_context(_open(eval_file)))
            return self._call("POST", f"/skills/{skill}/uploads", data=data, files=files)

    def upload_confirm(self, token: str) -> dict:
        return self._call("POST", f"/uploads/{token}/confirm")

    def job_create(self, skill: str, method: str, config: dict, demonstration_set: int | None = None) -> dict:
        return self._call("POST", "/jobs", json={"skill": skill, "method": method, "config": config,
                                                 "demonstration_set": demonstration_set})

    def jobs(self, *, skill: str | None = None, status: str | None = None, limit: int = 20) -> list[dict]:
        params = {k: v for k, v in {"skill": skill, "status": status}.items() if v}
        return self._call("GET", "/jobs", params={**params, "limit": limit})["items"]

    def job(self, job_id: int) -> dict:
        return self._call("GET", f"/jobs/{job_id}")

    def version(self, number: int) -> dict:
        return self._call("GET", f"/versions/{number}")

    def gate(self, number: int) -> dict:
        return self._call("GET", f"/versions/{number}/gate")

    def promotion_request_create(self, number: int, comment: str = "") -> dict:
        return self._call("POST", f"/versions/{number}/promotion-requests", json={"comment": comment})

    def promotion_requests(self, *, awaiting_me: bool) -> list[dict]:
        return self._all("/promotion-requests", {"awaiting_me": "true" if awaiting_me else "false",
                                                 **({} if awaiting_me else {"status": "open"})})

    def promotion_decide(self, request_id: int, decision: str, comment: str = "") -> dict:
        return self._call("POST", f"/promotion-requests/{request_id}/decision",
                          json={"decision": decision, "comment": comment})

    def production(self) -> dict:
        return self._call("GET", "/production")

    def export_manifest(self, number: int, part: str) -> dict:
        """The files an export of version `number` holds (part "model" or "adapter"): path, size, sha256."""
        return self._call("GET", f"/versions/{number}/manifest", params={"part": part})

    def export(self, number: int, part: str) -> Iterator[bytes]:
        """The export's .tar, chunk by chunk as it arrives. An error answer raises ApiError before the first
        chunk; a stream that breaks off raises ApiError with no status."""
        started = False
        try:
            with self.http.stream("GET", f"/versions/{number}/export", params={"part": part}, timeout=EXPORT_TIMEOUT,
                                  headers={"Accept": "application/x-tar, application/problem+json"}) as response:
                if not response.is_success:
                    response.read()
                    raise _problem(response)
                started = True
                yield from response.iter_bytes(1 << 20)
        except httpx.HTTPError as exc:
            if not started:
                raise ApiError(None, f"Cannot reach the Accrete API at {self.url} ({exc}): is the server running, "
                               "and is ACCRETE_URL right?") from None
            raise ApiError(None, f"The export of v{number} from {self.url} broke off ({exc or type(exc).__name__}). "
                           "The server cuts an export short when a file changes while it is sent; run it "
                           "again.") from None

    # --- transport ----------------------------------------------------------------------------------

    def _all(self, path: str, params: dict | None = None) -> list[dict]:
        """Every item of a paged list, page by page."""
        items: list[dict] = []
        while True:
            page = self._call("GET", path, params={**(params or {}), "limit": PAGE, "offset": len(items)})
            items.extend(page["items"])
            if not page["items"] or len(items) >= page["count"]:
                return items

    def _call(self, method: str, path: str, **kwargs) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise ApiError(None, f"The Accrete API at {self.url} did not answer in time.") from None
        except httpx.HTTPError as exc:
            raise ApiError(None, f"Cannot reach the Accrete API at {self.url} ({exc}): is the server running, "
                           "and is ACCRETE_URL right?") from None
        if response.is_success:
            return response.json() if response.content else None
        raise _problem(response)


def _problem(response: httpx.Response) -> ApiError:
    """The problem document of an error answer; a proxy's HTML page or an empty body still says its status."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        text = " ".join(response.text.split())[:200]
        return ApiError(response.status_code, f"HTTP {response.status_code} {response.reason_phrase}"
                        + (f": {text}" if text else ""))
    detail = body.get("detail") or body.get("title") or f"HTTP {response.status_code}"
    return ApiError(response.status_code, str(detail), code=body.get("code", ""), errors=body.get("errors"),
                    body=body)


def retrying(call, *, attempts: int = 5):
    """`call()` for a long watch, which one dropped request should not end: a transient failure (no answer,
    429, 5xx) is tried again after 1, 2, 4 … s; the `attempts`th in a row, or any other error, raises."""
    for attempt in range(attempts):
        try:
            return call()
        except ApiError as exc:
            transient = exc.status is None or exc.status == 429 or exc.status >= 500
            if not transient or attempt == attempts - 1:
                raise
            time.sleep(min(2 ** attempt, 10))
    raise ValueError("attempts must be at least 1")


def _open(path: Path):
    try:
        return path.open("rb")
    except OSError as exc:
        raise UsageError(f"Cannot read {path}: {exc.strerror}.") from None
