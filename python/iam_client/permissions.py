"""Authorization helpers with the old SDK's signatures.

Each takes either a list of names (as the old helpers did: ``has_role(user.roles, "admin")``)
or a ``UserContext`` (``has_role(user, "admin")``). Matching is exact.
"""
from .exceptions import MissingRoleError


def _names(subject, attribute):
    names = getattr(subject, attribute, None)
    if names is None:
        names = subject
    if isinstance(names, (str, bytes)):
        raise TypeError(f"expected a list of {attribute} or a UserContext, not a string")
    return names


def has_role(user_roles, required):
    """True when ``required`` is one of the roles."""
    return required in _names(user_roles, "roles")


def has_any_role(user_roles, required):
    """True when at least one of ``required`` is one of the roles (False for an empty list)."""
    roles = _names(user_roles, "roles")
    return any(r in roles for r in required)


def has_permission(user_permissions, required):
    """True when ``required`` is one of the permissions."""
    return required in _names(user_permissions, "permissions")


def require_role(user_roles, role):
    """Raises ``PermissionError("Missing role: <role>")`` (a ``MissingRoleError``, also an
    ``AuthorizationError``) unless ``role`` is one of the roles."""
    if role not in _names(user_roles, "roles"):
        raise MissingRoleError(f"Missing role: {role}")
