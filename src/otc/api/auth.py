"""Who may use the control API: the trader alone (issue 8 item 1; docs/security.md, "Control API").

The API listens on loopback, but that does not make a request the trader's: any local process, any
user of the machine, and any web page in the trader's browser can reach it. Every request must pass, in
this order, once its head is complete and before its body is read:

1. ``Host`` names this API (``127.0.0.1:PORT`` or ``localhost:PORT``), else 403 ``ERR_FORBIDDEN_HOST``:
   a page whose DNS name was rebound to 127.0.0.1 sends its own name, so it cannot read our answers.
2. No foreign ``Origin`` (and no ``Sec-Fetch-Site`` other than same-origin or none), else 403
   ``ERR_FORBIDDEN_ORIGIN``: a page on any other origin, including other loopback ports (which are the
   same *site*, so SameSite cookies do not stop them), is refused. No CORS headers are ever sent.
3. A body is ``Content-Type: application/json``, else 415 ``ERR_UNSUPPORTED_MEDIA_TYPE``: the only
   bodies a page may send cross-origin without a preflight (text/plain, forms) are refused.
4. ``Authorization: Bearer <token>`` (the token the peer wrote to ``<data-dir>/api.token``, mode 0600, at
   start; compared in constant time), or the session cookie of a browser that logged in with the token,
   else 401 ``ERR_UNAUTHORIZED``.

Sessions (for the web desk): ``POST /api/session`` with ``{"token": ...}`` sets an HttpOnly,
SameSite=Strict, Path=/ cookie holding a separate random secret (the token itself never goes into a
cookie); the server keeps only its SHA-256, at most ``API_MAX_SESSIONS`` of them, each for
``API_SESSION_TTL_S``. ``DELETE /api/session`` logs out. The cookie is named after the port, since
browsers do not separate cookies by port and two peers on one machine must not overwrite each other's.

Login links (``otc web``): a holder of the token mints a login code (``POST /api/login-codes``), a
separate random secret that ``POST /api/session {"code": ...}`` exchanges for a session once, within
``API_LOGIN_CODE_TTL_S``; at most ``API_MAX_LOGIN_CODES`` wait at a time. So the token never goes into
a URL, and the link left in a terminal or in the browser's history is worthless a minute later.

Public paths: the desk's own files (``/``, ``/static/...``: code, no data) are served without a
principal, after the same Host and Origin checks; everything else needs one.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import secrets
import time

import msgspec

from ..core.limits import API_LOGIN_CODE_TTL_S, API_MAX_LOGIN_CODES, API_MAX_SESSIONS, API_SESSION_TTL_S
from .server import HTTPError, Request, Response

SESSION_PATH = "/api/session"
ERR_UNAUTHORIZED = "ERR_UNAUTHORIZED"
ERR_FORBIDDEN_HOST = "ERR_FORBIDDEN_HOST"
ERR_FORBIDDEN_ORIGIN = "ERR_FORBIDDEN_ORIGIN"
ERR_UNSUPPORTED_MEDIA_TYPE = "ERR_UNSUPPORTED_MEDIA_TYPE"
SAME_ORIGIN_FETCH = {"same-origin", "none"}  # Sec-Fetch-Site values of our own pages and of the user


class LoginIn(msgspec.Struct, forbid_unknown_fields=True):
    """Exactly one of them: the API token, or a login code minted with it (``otc web``)."""

    token: str | None = None
    code: str | None = None


class LoginCodeOut(msgspec.Struct):
    code: str
    path: str  # where the browser should go: the code rides in the fragment, never sent in a request
    expires_at: int  # ms since the epoch


class SessionOut(msgspec.Struct):
    expires_at: int  # ms since the epoch


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).digest()


class Auth:
    """The guard of the control API (see the module docstring), and its login sessions."""

    def __init__(self, token: str) -> None:
        self.token = token
        self._token_bytes = token.encode()
        self.hosts: frozenset[str] = frozenset()  # nothing passes until ``bind``: fail closed
        self.origins: frozenset[str] = frozenset()
        self.cookie = "otc_session"
        # SHA-256 of each session secret -> its expiry (monotonic s), oldest login first
        self.sessions: collections.OrderedDict[bytes, float] = collections.OrderedDict()
        self.codes: collections.OrderedDict[bytes, float] = collections.OrderedDict()  # login codes, likewise
        self.public: frozenset[str] = frozenset()  # paths anyone may GET (the desk's files: no data)

    def bind(self, host: str, port: int) -> None:
        """Accept requests for the address the API is listening on."""
        names = {host, "localhost"} if host in ("127.0.0.1", "::1") else {host}
        names = {f"[{n}]" if ":" in n else n for n in names}
        with_port = {f"{n}:{port}" for n in names}
        self.hosts = frozenset(with_port | names if port == 80 else with_port)
        self.origins = frozenset(f"http://{n}:{port}" for n in names)
        self.cookie = f"otc_session_{port}"

    # --- the guard ----------------------------------------------------------------------------------
    def __call__(self, request: Request) -> None:
        headers = request.headers
        host = headers.get("host", "").lower()
        if host not in self.hosts:
            raise HTTPError(
                403, f"Host {host!r} is not this API's address (expected one of {sorted(self.hosts)})",
                ERR_FORBIDDEN_HOST,
            )  # fmt: skip
        origin = headers.get("origin")
        if origin is not None and origin.lower() not in self.origins:
            raise HTTPError(403, f"requests from the origin {origin!r} are refused", ERR_FORBIDDEN_ORIGIN)
        site = headers.get("sec-fetch-site")
        if site is not None and site.lower() not in SAME_ORIGIN_FETCH:
            raise HTTPError(403, f"requests from another site are refused ({site})", ERR_FORBIDDEN_ORIGIN)
        if int(headers.get("content-length") or 0) > 0:
            media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if media != "application/json":
                raise HTTPError(
                    415, f"a request body must be application/json, not {media or 'untyped'}",
                    ERR_UNSUPPORTED_MEDIA_TYPE,
                )  # fmt: skip
        if request.method == "POST" and request.path == SESSION_PATH:
            return  # the login: its body holds the token or a login code
        if request.method == "GET" and request.path in self.public:
            request.principal = self.principal(headers)  # a cookie may come along; nothing needs it
            return
        request.principal = self.principal(headers)
        if request.principal is None:
            if "authorization" in headers:
                why = "not the peer's token (a new one is written to <data-dir>/api.token at every start)"
            else:
                why = "this API needs its token: Authorization: Bearer <the peer's <data-dir>/api.token>"
            raise HTTPError(
                401,
                f"{why}; otc finds it by itself (otc --as NAME), or give --token / OTC_TOKEN",
                ERR_UNAUTHORIZED,
                {"WWW-Authenticate": 'Bearer realm="otc"'},
            )

    def principal(self, headers: dict[str, str]) -> str | None:
        authorization = headers.get("authorization")
        if authorization is not None:
            scheme, _, given = authorization.strip().partition(" ")
            if scheme.lower() == "bearer" and self.is_token(given.strip()):
                return "token"
            return None  # a wrong token is not made good by a cookie
        secret = self._cookie(headers.get("cookie", ""))
        if secret is not None and self._session_alive(_digest(secret)):
            return "session"
        return None

    def is_token(self, given: str) -> bool:
        # compare_digest's time does not depend on the content (only on the length, which is public)
        return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), self._token_bytes)

    def _cookie(self, header: str) -> str | None:
        for part in header.split(";"):
            name, eq, value = part.strip().partition("=")
            if eq and name == self.cookie:
                return value.strip()
        return None

    def _session_alive(self, key: bytes) -> bool:
        expiry = self.sessions.get(key)
        if expiry is None:
            return False
        if expiry <= time.monotonic():
            del self.sessions[key]
            return False
        return True

    # --- login and logout ---------------------------------------------------------------------------
    def mint_code(self) -> LoginCodeOut:
        """A new single-use login code (for a holder of the token: see ``login``)."""
        now = time.monotonic()
        for key in [k for k, expiry in self.codes.items() if expiry <= now]:
            del self.codes[key]
        while len(self.codes) >= API_MAX_LOGIN_CODES:
            self.codes.popitem(last=False)  # the oldest link stops working
        code = secrets.token_urlsafe(32)
        self.codes[_digest(code)] = now + API_LOGIN_CODE_TTL_S
        expires_at = time.time_ns() // 1_000_000 + API_LOGIN_CODE_TTL_S * 1000
        return LoginCodeOut(code, f"/#login={code}", expires_at)

    def _use_code(self, code: str) -> bool:
        expiry = self.codes.pop(_digest(code), None)  # gone at its first use, right or late
        return expiry is not None and expiry > time.monotonic()

    async def login(self, request: Request) -> Response:
        try:
            body = msgspec.json.decode(request.body, type=LoginIn)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            message = f'the body must be {{"token": "..."}} or {{"code": "..."}}: {exc}'
            raise HTTPError(400, message, "ERR_INVALID_PAYLOAD") from None
        if (body.token is None) == (body.code is None):
            raise HTTPError(400, 'give either "token" or "code"', "ERR_INVALID_PAYLOAD")
        if body.code is not None and not self._use_code(body.code):
            message = (
                "this login link was used already or is more than a minute old: `otc web` prints a new one"
            )
            raise HTTPError(401, message, ERR_UNAUTHORIZED)
        if body.token is not None and not self.is_token(body.token):
            raise HTTPError(401, "wrong token", ERR_UNAUTHORIZED)
        now = time.monotonic()
        for key in [k for k, expiry in self.sessions.items() if expiry <= now]:
            del self.sessions[key]
        while len(self.sessions) >= API_MAX_SESSIONS:
            self.sessions.popitem(last=False)  # the oldest login ends
        secret = secrets.token_urlsafe(32)
        self.sessions[_digest(secret)] = now + API_SESSION_TTL_S
        expires_at = time.time_ns() // 1_000_000 + API_SESSION_TTL_S * 1000
        cookie = f"{self.cookie}={secret}; HttpOnly; SameSite=Strict; Path=/; Max-Age={API_SESSION_TTL_S}"
        return Response(msgspec.json.encode(SessionOut(expires_at)), 201, headers={"Set-Cookie": cookie})

    async def logout(self, request: Request) -> Response:
        secret = self._cookie(request.headers.get("cookie", ""))
        if secret is not None:
            self.sessions.pop(_digest(secret), None)
        cookie = f"{self.cookie}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"
        return Response(b'{"logged_out":true}', 200, headers={"Set-Cookie": cookie})
