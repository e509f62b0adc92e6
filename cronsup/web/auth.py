"""Who may see the web view: the --auth-file of users with scrypt-hashed passwords and of tokens.

One entry a line, `#` comments:

    alice:scrypt:16384:8:1:SALT:HASH     a user (HTTP Basic); `cronsup web --hash-password alice`
    ci:token:sha256:HEX                  a token (Authorization: Bearer ...); `cronsup web --new-token ci`

SALT and HASH are base64. Only hashes are stored, so the file leaks no password.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass

SCRYPT_N, SCRYPT_R, SCRYPT_P = 16384, 8, 1


class AuthFileError(Exception):
    """The auth file cannot be used: FILE:LINE: message."""


def hash_password(user: str, password: str) -> str:
    """The auth-file line for `user` with this password."""
    _check_name(user)
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"{user}:scrypt:{SCRYPT_N}:{SCRYPT_R}:{SCRYPT_P}:{_b64(salt)}:{_b64(digest)}"


def new_token(name: str) -> tuple[str, str]:
    """A fresh token and the auth-file line that accepts it."""
    _check_name(name)
    token = secrets.token_urlsafe(32)
    return token, f"{name}:token:sha256:{hashlib.sha256(token.encode()).hexdigest()}"


def _check_name(name: str) -> None:
    if not name or ":" in name or any(c.isspace() for c in name):
        raise ValueError(f"name {name!r}: give a name without ':' or spaces")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass(frozen=True)
class _User:
    name: str
    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes


class AuthFile:
    """The entries of an auth file, reread when the file changes."""

    def __init__(self, path: str):
        self.path = path
        self._stamp: tuple | None = None
        self.users: dict[str, _User] = {}
        self.tokens: dict[str, str] = {}  # sha256 hex -> name
        self._good: set[bytes] = set()  # digests of credentials already checked, scrypt is slow
        self.reload()

    def reload(self) -> None:
        """Read the file if it changed; AuthFileError (the old entries stay) if it is bad."""
        try:
            st = os.stat(self.path)
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
            if stamp == self._stamp:
                return
            with open(self.path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise AuthFileError(f"{self.path}: cannot read the auth file: {e.strerror}") from None
        except UnicodeDecodeError:
            raise AuthFileError(f"{self.path}: not UTF-8 text") from None
        users, tokens = {}, {}
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                name, kind, *rest = line.split(":")
                if kind == "scrypt" and len(rest) == 5:
                    n, r, p = (int(v) for v in rest[:3])
                    users[name] = _User(name, n, r, p, base64.b64decode(rest[3], validate=True),
                                        base64.b64decode(rest[4], validate=True))
                elif kind == "token" and len(rest) == 2 and rest[0] == "sha256" and len(rest[1]) == 64:
                    int(rest[1], 16)
                    tokens[rest[1].lower()] = name
                else:
                    raise ValueError
            except (ValueError, binascii.Error):
                raise AuthFileError(
                    f"{self.path}:{number}: not an entry: want NAME:scrypt:N:R:P:SALT:HASH (from "
                    "`cronsup web --hash-password NAME`) or NAME:token:sha256:HEX (from "
                    "`cronsup web --new-token NAME`)") from None
        if not users and not tokens:
            raise AuthFileError(f"{self.path}: no users or tokens in the auth file (add one with "
                                "`cronsup web --hash-password NAME >> FILE`)")
        self.users, self.tokens, self._stamp, self._good = users, tokens, stamp, set()

    def check_basic(self, user: str, password: str) -> bool:
        entry = self.users.get(user)
        key = hashlib.sha256(f"{user}\0{password}\0{id(entry)}".encode()).digest()
        if entry is None:
            return False
        if key in self._good:
            return True
        try:
            digest = hashlib.scrypt(password.encode(), salt=entry.salt, n=entry.n, r=entry.r,
                                    p=entry.p, dklen=len(entry.digest), maxmem=256 * 1024 * 1024)
        except ValueError:
            return False
        if hmac.compare_digest(digest, entry.digest):
            self._good.add(key)
            return True
        return False

    def check_token(self, token: str) -> bool:
        digest = hashlib.sha256(token.encode()).hexdigest()
        return any(hmac.compare_digest(digest, known) for known in self.tokens)
