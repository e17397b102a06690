"""A FastAPI service that accepts Tessera access tokens: GET /hello answers the
caller's `sub`.

    python -m venv .venv && .venv/bin/pip install -r requirements.txt
    TESSERA_ISSUER=http://127.0.0.1:8080 .venv/bin/python app.py

Environment: TESSERA_ISSUER (required: exactly the `iss` of the tokens),
TESSERA_AUDIENCE (default tessera), HOST (default 127.0.0.1), PORT (default
8000), REVOCATION_POLL_MS (default 2000), CLOCK_TOLERANCE_S (default 30).

- PyJWT's PyJWKClient reads the issuer's JWKS and keeps it; a token naming a key
  it does not know reads it again (at most every 10 s), so a key rotation needs
  no restart.
- Each key verifies only the algorithm its JWK names (never `none`, never HS256
  with a public key); `typ` must be at+jwt; issuer, audience and times are checked.
- The revocation feed GET /v1/revocations?since= is polled, so a session that
  logged out (or was revoked for reuse) stops working within one poll. If the
  feed cannot be read for 30 s, tokens are refused with 503 rather than trusted.
"""

import json
import os
import sys
import threading
import time
import urllib.parse
import urllib.request

import jwt
import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request

ISSUER = os.environ.get("TESSERA_ISSUER", "")
if not ISSUER:
    sys.exit("set TESSERA_ISSUER to the issuer URL, e.g. http://127.0.0.1:8080")
BASE = ISSUER.rstrip("/")
AUDIENCE = os.environ.get("TESSERA_AUDIENCE", "tessera")
POLL_S = int(os.environ.get("REVOCATION_POLL_MS", "2000")) / 1000
LEEWAY_S = int(os.environ.get("CLOCK_TOLERANCE_S", "30"))
STALE_AFTER_S = 30
JWKS_COOLDOWN_S = 10
ALGORITHMS = {"EdDSA", "ES256", "RS256"}

jwks = jwt.PyJWKClient(f"{BASE}/.well-known/jwks.json", cache_keys=False, lifespan=300)
jwks_fetched_at = 0.0
jwks_lock = threading.Lock()


def signing_key(kid):
    """The key a token names; the JWKS is read again for an unknown kid, at most
    once every JWKS_COOLDOWN_S, so random kids cannot make us hammer the issuer."""
    global jwks_fetched_at
    for refresh in (False, True):
        with jwks_lock:
            if refresh:
                if time.monotonic() - jwks_fetched_at < JWKS_COOLDOWN_S:
                    return None
                jwks_fetched_at = time.monotonic()
            try:
                keys = jwks.get_signing_keys(refresh=refresh)
            except jwt.PyJWKClientError:
                keys = []
        for key in keys:
            if key.key_id == kid:
                return key
    return None


revoked = {}  # revoked session id -> time until which its tokens matter
feed_state = {"cursor": "0", "read_at": 0.0}


def read_feed():
    for _ in range(100):
        query = urllib.parse.urlencode({"since": feed_state["cursor"]})
        with urllib.request.urlopen(f"{BASE}/v1/revocations?{query}", timeout=10) as res:
            page = json.load(res)
        for entry in page["revoked"]:
            revoked[entry["sid"]] = entry["until"]
        feed_state["cursor"] = page["cursor"]
        if not page["revoked"]:
            break
    now = time.time()
    for sid, until in list(revoked.items()):
        if until + LEEWAY_S < now:
            del revoked[sid]
    feed_state["read_at"] = time.monotonic()


def follow_feed():
    while True:
        time.sleep(POLL_S)
        try:
            read_feed()
        except Exception as e:  # keep polling; stale_after decides
            print(f"tessera revocation feed unreachable: {e}", file=sys.stderr)


def refuse(status, description):
    headers = {"Cache-Control": "no-store"}
    if status == 401:
        headers["WWW-Authenticate"] = (
            f'Bearer error="invalid_token", error_description="{description}"'
        )
    else:
        headers["Retry-After"] = "2"
    return HTTPException(status_code=status, detail=description, headers=headers)


def current_user(request: Request) -> dict:
    """The verified claims of the caller's access token, from Tessera's access
    cookie (when this service shares Tessera's site) or the Authorization header."""
    header = request.headers.get("authorization", "")
    token = (
        request.cookies.get("__Host-tessera_at")
        or request.cookies.get("tessera_at")
        or (header[7:].strip() if header[:7].lower() == "bearer " else None)
    )
    if not token:
        raise refuse(401, "an access token is required")
    if time.monotonic() - feed_state["read_at"] > STALE_AFTER_S:
        raise refuse(503, "token revocation status is unknown; retry shortly")
    try:
        header = jwt.get_unverified_header(token)
        # The header is signed: once the signature verifies, these checks hold.
        if str(header.get("typ", "")).lower() not in ("at+jwt", "application/at+jwt"):
            raise jwt.InvalidTokenError("typ must be at+jwt")
        key = signing_key(header.get("kid"))
        if key is None or key.algorithm_name not in ALGORITHMS:
            raise jwt.InvalidTokenError("unknown key")
        claims = jwt.decode(
            token,
            key.key,
            algorithms=[key.algorithm_name],
            audience=AUDIENCE,
            issuer=ISSUER,
            leeway=LEEWAY_S,
            options={"require": ["exp", "iat", "sub", "sid"]},
        )
    except jwt.ExpiredSignatureError:
        raise refuse(401, "the access token expired; refresh it")
    except jwt.PyJWTError:
        raise refuse(401, "the access token is not valid")
    until = revoked.get(claims["sid"])
    if until is not None and until + LEEWAY_S > time.time():
        raise refuse(401, "the session of this access token has ended")
    return claims


app = FastAPI()


@app.get("/hello")
def hello(user: dict = Depends(current_user)):
    return {"sub": user["sub"]}


if __name__ == "__main__":
    # Start only once the keys and the whole feed could be read.
    jwks.get_signing_keys()
    jwks_fetched_at = time.monotonic()
    read_feed()
    threading.Thread(target=follow_feed, daemon=True).start()
    uvicorn.run(
        app,
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "8000")),
        log_level="warning",
    )
