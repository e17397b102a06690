"""Credentials for the schemathesis run of fuzz_api.sh (loaded by SCHEMATHESIS_HOOKS).

Operations that take an access token get one of a freshly registered user: a
logout, a password change or a revoked session only ends that user's session,
and the next 401 makes schemathesis fetch a new one. The OAuth endpoints
authenticate as a confidential first-party client with HTTP Basic, unless the
generated form names a client itself.
"""

import base64
import os
import uuid

import requests
import schemathesis

BASE = os.environ["FUZZ_BASE_URL"].rstrip("/")
CLIENT_ID = os.environ["FUZZ_CLIENT_ID"]
CLIENT_SECRET = os.environ["FUZZ_CLIENT_SECRET"]
PASSWORD = "correct horse battery"


@schemathesis.auth().apply_to(path_regex="^/(v1/me|v1/auth/logout|oauth/userinfo)")
class AccessToken:
    def get(self, case, context):
        name = "fz" + uuid.uuid4().hex[:16]
        r = requests.post(
            f"{BASE}/v1/auth/register",
            json={"email": f"{name}@example.com", "username": name, "password": PASSWORD},
            timeout=30,
        )
        r.raise_for_status()
        r = requests.post(
            f"{BASE}/v1/auth/login",
            json={"login": name, "password": PASSWORD, "delivery": "body"},
            timeout=30,
        )
        r.raise_for_status()
        return r.json()["access_token"]

    def set(self, case, data, context):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


@schemathesis.auth(refresh_interval=None).apply_to(path_regex="^/oauth/(token|revoke|introspect)$")
class ClientBasic:
    def get(self, case, context):
        # The id and secret are URL-safe, so RFC 6749 §2.3.1 form-encoding keeps them.
        return base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()

    def set(self, case, data, context):
        body = case.body if isinstance(case.body, dict) else {}
        if "client_id" not in body and "client_secret" not in body:
            case.headers = case.headers or {}
            case.headers["Authorization"] = f"Basic {data}"
