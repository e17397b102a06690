"""requests-oauthlib / oauthlib drive Tessera's OAuth 2 endpoints found through
discovery: the password and refresh-token grants for a public and a confidential
client, userinfo, revocation, and refresh-token reuse detection.

Usage: python3 oauth_client.py BASE_URL USERNAME PASSWORD CLIENT_ID CLIENT_SECRET
"""

import os
import sys

# The test server listens on plain HTTP on the loopback interface.
os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"

import oauthlib  # noqa: E402
import requests  # noqa: E402
from oauthlib.oauth2 import (  # noqa: E402
    InvalidClientError,
    InvalidGrantError,
    LegacyApplicationClient,
)
from requests_oauthlib import OAuth2Session  # noqa: E402


def must_fail(what, expected, fn):
    try:
        fn()
    except expected:
        return
    raise AssertionError(f"{what}: expected {expected.__name__}")


def main():
    base, username, password, client_id, client_secret = sys.argv[1:6]
    meta = requests.get(f"{base}/.well-known/openid-configuration", timeout=10).json()
    assert meta["issuer"] == base, meta["issuer"]
    token_url = meta["token_endpoint"]
    assert "password" in meta["grant_types_supported"], meta

    # A public first-party client (authentication method "none").
    public = OAuth2Session(client=LegacyApplicationClient(client_id="tessera"))
    first = public.fetch_token(
        token_url,
        username=username,
        password=password,
        client_id="tessera",
        include_client_id=True,
    )
    assert first["token_type"] == "Bearer" and first["expires_in"] > 0, first
    second = public.refresh_token(token_url, client_id="tessera")
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    info = public.get(meta["userinfo_endpoint"], timeout=10).json()
    assert info["preferred_username"] == username, info
    third = public.refresh_token(token_url, client_id="tessera")
    # A second tab replaying the previous token within the grace window converges
    # on the same successor.
    tab = public.refresh_token(
        token_url, refresh_token=second["refresh_token"], client_id="tessera"
    )
    assert tab["refresh_token"] == third["refresh_token"]
    # An older token is theft: refused, and the whole session ends.
    must_fail(
        "reused refresh token",
        InvalidGrantError,
        lambda: public.refresh_token(
            token_url, refresh_token=first["refresh_token"], client_id="tessera"
        ),
    )
    must_fail(
        "refresh after reuse",
        InvalidGrantError,
        lambda: public.refresh_token(
            token_url, refresh_token=third["refresh_token"], client_id="tessera"
        ),
    )

    # A confidential client (client_secret_basic).
    conf = OAuth2Session(client=LegacyApplicationClient(client_id=client_id))
    conf.fetch_token(
        token_url,
        username=username,
        password=password,
        client_id=client_id,
        client_secret=client_secret,
    )
    latest = conf.refresh_token(token_url, auth=(client_id, client_secret))
    must_fail(
        "wrong client secret",
        InvalidClientError,
        lambda: conf.refresh_token(token_url, auth=(client_id, "wrong")),
    )
    url, headers, body = conf._client.prepare_token_revocation_request(
        meta["revocation_endpoint"], latest["refresh_token"], token_type_hint="refresh_token"
    )
    r = requests.post(url, data=body, headers=headers, auth=(client_id, client_secret), timeout=10)
    assert r.status_code == 200, r.text
    must_fail(
        "refresh after revocation",
        InvalidGrantError,
        lambda: conf.refresh_token(token_url, auth=(client_id, client_secret)),
    )
    print(f"oauthlib {oauthlib.__version__} / requests-oauthlib: token, userinfo and revocation endpoints ok")


if __name__ == "__main__":
    main()
