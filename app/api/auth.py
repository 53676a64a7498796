"""The API's one secret: a bearer token in ``$VP_HOME/api_token``, made on first start, readable by its owner only.

Why a token although the API listens on 127.0.0.1: every local user and every web page the user opens can
reach a loopback port. A file of mode 0600 in the studio's home is what only this user can read.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from core.errors import ConfigError
from core.paths import studio_home

TOKEN_NAME = "api_token"
#: bytes of randomness in a new token (``secrets.token_urlsafe``: 43 characters)
TOKEN_BYTES = 32
#: a shorter token in the file is refused: somebody wrote it by hand
MIN_TOKEN_CHARS = 32


def token_path() -> Path:
    return studio_home() / TOKEN_NAME


def load_or_create_token(path: Path | None = None) -> str:
    """The token in ``path`` (default ``$VP_HOME/api_token``), made there first when absent.

    Made under a temp name with mode 0600 and linked into place, so two servers starting at once agree on one
    token and nobody ever reads half of one. ConfigError naming the file when it is readable by others (fix its
    mode or delete it: a leaked token must be replaced, not hidden) or holds no usable token."""
    path = path or token_path()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(TOKEN_BYTES) + "\n")
                f.flush()
                os.fsync(f.fileno())
            with contextlib.suppress(FileExistsError):  # another server made it first: use theirs
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(f"{path}: mode {mode:04o} lets other users read the API token; "
                          f"run `chmod 600 {path}`, or delete it to make a new token")
    token = path.read_text(encoding="utf-8", errors="replace").strip()
    if len(token) < MIN_TOKEN_CHARS or not token.isascii() or not token.isprintable():
        raise ConfigError(f"{path}: not an API token (expected {MIN_TOKEN_CHARS}+ printable ASCII characters); "
                          "delete it to make a new one")
    return token


#: declares the scheme in the OpenAPI schema (so clients and schemathesis send the header); the check is ours
_BEARER = HTTPBearer(auto_error=False, description="the token in $VP_HOME/api_token")


def check_token(request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]) -> None:
    """A FastAPI dependency: 401 unless the request carries the server's token. Compared in constant time,
    so the answer's timing says nothing about how much of a guess was right."""
    expected: str = request.app.state.token
    given = creds.credentials.strip() if creds is not None else ""
    if not given or not secrets.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode()):
        raise HTTPException(401, "missing or wrong API token: send `Authorization: Bearer <token>` with the "
                                 "token in $VP_HOME/api_token", headers={"WWW-Authenticate": "Bearer"})
