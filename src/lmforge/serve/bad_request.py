"""The refusal of a request (no HTTP code here: the CLI builds `lmforge serve`'s flags from modules using it)."""

from __future__ import annotations


class BadRequest(Exception):
    """A request the server refuses: answered as an error object with `status` naming `param`."""

    def __init__(self, message: str, param: str | None = None, status: int = 400, code: str | None = None):
        super().__init__(message)
        self.param, self.status, self.code = param, status, code
