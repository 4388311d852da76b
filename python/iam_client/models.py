"""The data models: ``UserContext`` (implemented in C, over libiamclient's user context)
and ``TokenPayload``.

``UserContext`` keeps the old pydantic model's surface — keyword construction, attribute
access, ``.dict()`` (and ``.model_dump()``, ``.json()``), equality — but is immutable: a
verified identity is not edited. List fields (``roles``, ``permissions``, ``org_role``,
``scopes``) return a new list on every access. Identifiers are always strings.
"""
from ._iam_client import UserContext

__all__ = ["UserContext", "TokenPayload"]


class TokenPayload:
    """The old SDK's claim model: ``sub`` and ``email`` required, ``roles``,
    ``permissions`` default to empty lists, ``exp`` to None."""

    __slots__ = ("sub", "email", "roles", "permissions", "exp")

    def __init__(self, *, sub, email, roles=None, permissions=None, exp=None):
        if not isinstance(sub, str):
            sub = str(sub)
        self.sub = sub
        self.email = email
        self.roles = list(roles) if roles is not None else []
        self.permissions = list(permissions) if permissions is not None else []
        self.exp = int(exp) if exp is not None else None

    @classmethod
    def from_claims(cls, claims):
        """Builds one from a verified claim set (``decode_local``'s result)."""
        return cls(sub=claims["sub"], email=claims.get("email"), roles=claims.get("roles"),
                   permissions=claims.get("permissions"), exp=claims.get("exp"))

    def dict(self):
        return {name: getattr(self, name) for name in self.__slots__}

    model_dump = dict

    def __eq__(self, other):
        if not isinstance(other, TokenPayload):
            return NotImplemented
        return self.dict() == other.dict()

    __hash__ = None

    def __repr__(self):
        fields = ", ".join(f"{k}={v!r}" for k, v in self.dict().items())
        return f"TokenPayload({fields})"
