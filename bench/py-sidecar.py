#!/usr/bin/env python3
"""The Python auth_request sidecar of scripts/bench-peers: one thread, HTTP/1.1 keep-alive,
PyJWT (Debian's python3-jwt) checking a bearer token's RS256 signature against a key set file,
exp, iss, aud and tid on every request, as a sidecar without a cache does.

    py-sidecar.py PORT JWKS_FILE TENANT CLIENT_ID
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

import jwt

port, jwks_file, tenant, client = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
with open(jwks_file, encoding="utf-8") as f:
    keys = {k.key_id: k.key for k in jwt.PyJWKSet.from_dict(json.load(f)).keys}
issuer = f"https://login.microsoftonline.com/{tenant}/v2.0"


class Validate(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        status = 401
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token:
            try:
                key = keys[jwt.get_unverified_header(token)["kid"]]
                claims = jwt.decode(token, key, algorithms=["RS256"], audience=client, issuer=issuer,
                                    options={"require": ["exp", "iss", "aud"]})
                if claims.get("tid") == tenant:
                    status = 200
            except (jwt.PyJWTError, KeyError):
                pass
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_):
        pass


HTTPServer(("127.0.0.1", port), Validate).serve_forever()
