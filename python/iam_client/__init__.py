"""iam_client — the OmniBioAI identity client for Python, powered by libiamclient.

A drop-in replacement for the platform's first Python SDK (same names, same contract:
``await client.get_user(token, secret)`` returns a ``UserContext`` or None), with the
verification, caching and invalidation done by the C library. See the README's Python
section.
"""
from .exceptions import (AuthenticationError, AuthorizationError, IAMError,
                         MissingRoleError, UnavailableError)
from .models import TokenPayload, UserContext
from .client import AsyncIAMClient, IAMClient, IAMClientSync
from .permissions import has_any_role, has_permission, has_role, require_role
from ._iam_client import LIBRARY_VERSION

__version__ = "0.2.0"

__all__ = [
    "AsyncIAMClient", "IAMClient", "IAMClientSync", "UserContext", "TokenPayload",
    "IAMError", "AuthenticationError", "AuthorizationError", "UnavailableError",
    "MissingRoleError", "has_role", "has_any_role", "has_permission", "require_role",
    "LIBRARY_VERSION",
]
