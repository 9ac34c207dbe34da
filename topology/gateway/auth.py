"""Who is calling: a users file maps bearer tokens to Principals.

The file (YAML) looks like this:

    users:
      alice: {token: "s3cret-alice", tenant: acme, groups: [eng]}
      bob:   {token: "s3cret-bob", tenant: acme}

`Authorization: Bearer s3cret-alice` is then Principal(user="alice", tenant="acme",
groups=["eng"]). Without a users file the gateway runs open: every caller is the anonymous
Principal() of tenant "default" (fine on a laptop, and the web page says so).

Tokens are compared as SHA-256 digests with `hmac.compare_digest`, against every user each
time, so the time a check takes does not tell how much of a guessed token was right.
"""
from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import msgspec
import yaml

from schemas.documents import Principal


class UsersFileError(ValueError):
    """The users file cannot be used; the message names the file and the place."""


class Unauthorized(Exception):
    """The request carries no usable credentials (the gateway answers 401)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UserEntry(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    token: str
    tenant: str = "default"
    groups: list[str] = []


class UsersFile(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    users: dict[str, UserEntry]


class Users:
    """Token → Principal, built from a UsersFile (see load_users)."""

    def __init__(self, spec: UsersFile) -> None:
        self._entries: list[tuple[bytes, Principal]] = []
        seen: set[bytes] = set()
        for name, entry in spec.users.items():
            if not entry.token.strip():
                raise UsersFileError(f"$.users.{name}.token is empty")
            digest = _digest(entry.token)
            if digest in seen:
                raise UsersFileError(f"$.users.{name}.token is also another user's token")
            seen.add(digest)
            principal = Principal(user=name, tenant=entry.tenant, groups=list(entry.groups))
            self._entries.append((digest, principal))

    def __len__(self) -> int:
        return len(self._entries)

    def by_name(self, name: str) -> Principal | None:
        """A user's Principal by name: for `patchwire ask --as USER`, which trusts its caller."""
        return next((p for _, p in self._entries if p.user == name), None)

    def authenticate(self, authorization: str | None) -> Principal:
        """The Principal for an Authorization header value; raises Unauthorized."""
        if not authorization:
            raise Unauthorized("missing Authorization: Bearer <token> header")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("the Authorization header must be 'Bearer <token>'")
        principal = self.lookup(token.strip())
        if principal is None:
            raise Unauthorized("unknown token")
        return principal

    def lookup(self, token: str) -> Principal | None:
        """The Principal whose token this is; every entry is compared (constant time)."""
        digest = _digest(token)
        found: Principal | None = None
        for known, principal in self._entries:
            if hmac.compare_digest(known, digest):
                found = principal
        return found


def authenticate(users: Users | None, authorization: str | None) -> Principal:
    """The caller's Principal: anonymous when the gateway runs without a users file."""
    if users is None:
        return Principal()
    return users.authenticate(authorization)


def load_users(path: str | Path) -> Users:
    """Read and check a users file; errors name the file and the offending path."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise UsersFileError(f"{path}: {exc}") from exc
    try:
        spec = msgspec.convert(raw, UsersFile)
    except msgspec.ValidationError as exc:
        raise UsersFileError(f"{path}: {exc}") from exc
    try:
        return Users(spec)
    except UsersFileError as exc:
        raise UsersFileError(f"{path}: {exc}") from exc


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()
