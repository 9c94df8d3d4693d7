"""A misbehaving identity provider over real HTTP on 127.0.0.1: discovery, JWKS, token and userinfo endpoints.

Each test sets `idp.behaviour[...]` to make one endpoint misbehave, or `idp.claims`/`idp.header` to shape the
ID token. The portal's real start and callback views run, through the Django test client; the `idp` fixture
(tests/portal/test_sso_provider_misbehaving.py) points the portal at it.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

CLIENT_ID, CLIENT_SECRET = "gateway-portal", "tests-only-client-secret"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
KEY2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwk_of(key, kid: str | None) -> dict:
    d = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    d.update({"use": "sig", "alg": "RS256"})
    if kid is not None:
        d["kid"] = kid
    return d


class IdP:
    def __init__(self):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.issuer = f"http://127.0.0.1:{self.server.server_port}"
        self.hits: dict[str, int] = {}
        self.behaviour: dict[str, object] = {}  # endpoint -> callable(handler) overriding the normal answer
        self.keys = [(KEY, "k1")]  # what JWKS publishes
        self.signing = (KEY, "k1")  # what signs the ID token
        self.header: dict = {}
        self.claims: dict = {}
        self.userinfo: dict | None = None  # None: no userinfo endpoint in discovery
        self.nonces: dict[str, str] = {}
        self.token_override = None  # a function(nonce) -> id token string
        self.stop = threading.Event()
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def document(self) -> dict:
        doc = {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/auth",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "id_token_signing_alg_values_supported": ["RS256", "HS256", "none"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        }
        if self.userinfo is not None:
            doc["userinfo_endpoint"] = f"{self.issuer}/userinfo"
        return doc

    def id_token(self, nonce: str) -> str:
        if self.token_override is not None:
            return self.token_override(nonce)
        now = int(time.time())
        payload = {
            "iss": self.issuer,
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 300,
            "nonce": nonce,
            "sub": "idp-bob",
            "email": "bob@example.com",
            "email_verified": True,
            "auth_time": now,
        }
        payload.update(self.claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        key, kid = self.signing
        headers = {"kid": kid} if kid else {}
        headers.update(self.header)
        return jwt.encode(payload, key, algorithm="RS256", headers=headers)

    def _handler(self):
        idp = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def send(self, status: int, body, ctype="application/json"):
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def route(self, method):
                path = urlsplit(self.path).path
                name = {
                    "/.well-known/openid-configuration": "discovery",
                    "/jwks": "jwks",
                    "/token": "token",
                    "/userinfo": "userinfo",
                }.get(path, "other")
                idp.hits[name] = idp.hits.get(name, 0) + 1
                if method == "POST":
                    length = int(self.headers.get("Content-Length") or 0)
                    self.form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                if name in idp.behaviour:
                    return idp.behaviour[name](self)
                if name == "discovery":
                    return self.send(200, idp.document())
                if name == "jwks":
                    return self.send(200, {"keys": [jwk_of(k, kid) for k, kid in idp.keys]})
                if name == "token":
                    nonce = idp.nonces[self.form["code"]]
                    return self.send(
                        200, {"id_token": idp.id_token(nonce), "access_token": "at-1", "token_type": "Bearer"}
                    )
                if name == "userinfo":
                    return self.send(200, idp.userinfo)
                return self.send(404, {"error": "not_found"})

            def do_GET(self):
                self.route("GET")

            def do_POST(self):
                self.route("POST")

        return Handler

    def close(self):
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


def trickle(idp: IdP, every: float = 1.0, chunk: bytes = b" ", length: str | None = "100000000"):
    """An answer that starts at once and then sends `chunk` every `every` seconds, forever (until `idp.stop`).

    `length` is the Content-Length it claims; None sends none (the answer ends when the connection closes).
    """

    def answer(handler):
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        if length is not None:
            handler.send_header("Content-Length", length)
        else:
            handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(b"{")
        handler.wfile.flush()
        try:
            while not idp.stop.wait(every):
                handler.wfile.write(chunk)
                handler.wfile.flush()
        except OSError:
            pass
        handler.close_connection = True
        with contextlib.suppress(OSError):
            handler.connection.shutdown(socket.SHUT_RDWR)

    return answer


def start(client, idp: IdP):
    response = client.get("/oidc/authenticate/")
    assert response.status_code == 302, response.content[:500]
    asked = {k: v[0] for k, v in parse_qs(urlsplit(response["Location"]).query).items()}
    code = f"code-{len(idp.nonces)}"
    idp.nonces[code] = asked["nonce"]
    return asked["state"], code


def sign_in(client, idp: IdP):
    state, code = start(client, idp)
    return client.get("/oidc/callback/", {"code": code, "state": state})


def signed_in(client):
    return client.session.get("_auth_user_id")
