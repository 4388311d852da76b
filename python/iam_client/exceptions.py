"""Exceptions of the iam_client package (the old SDK's three, plus a few precise ones).

Messages never contain a token or a secret: they come from libiamclient, whose messages
never echo either.
"""


class IAMError(Exception):
    """Base of every error this package raises (configuration errors included)."""


class AuthenticationError(IAMError):
    """The token was refused.

    ``reason`` is libiamclient's reason code (``"expired"``, ``"bad_signature"``,
    ``"revoked"``, ``"wrong_tenant"``, … — see the README), ``status`` the numeric
    ``iam_status`` (negative).
    """

    def __init__(self, message="", reason=None, status=None):
        super().__init__(message)
        self.reason = reason
        self.status = status


class UnavailableError(IAMError):
    """No answer could be obtained (reason ``"unavailable"``): the token is NOT known to be
    invalid. A web service would answer 503 here, not 401."""

    def __init__(self, message="", reason="unavailable", status=None):
        super().__init__(message)
        self.reason = reason
        self.status = status


class AuthorizationError(IAMError):
    """The caller is authenticated but lacks a role or permission."""


class MissingRoleError(AuthorizationError, PermissionError):
    """Raised by ``require_role``: both the old ``PermissionError`` and an
    ``AuthorizationError``, so either ``except`` clause catches it."""
