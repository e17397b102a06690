"""Authlib checks Tessera as an OpenID provider: both discovery documents pass
its metadata validators (OpenID Connect Discovery 1.0, RFC 8414), and an ID
token from the code flow passes its ID-token validation (signature against the
JWKS, iss, aud, nonce, at_hash, exp, iat, auth_time).

The validators require https: the server under test is configured with an
https issuer and reached at BASE_URL on the loopback interface.

Usage: python3 validate_oidc.py BASE_URL ISSUER ID_TOKEN CLIENT_ID NONCE ACCESS_TOKEN
"""

import sys

import authlib
import requests
from authlib.jose import JsonWebKey, jwt
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from authlib.oidc.core import CodeIDToken
from authlib.oidc.discovery import OpenIDProviderMetadata


def main():
    base, issuer, id_token, client_id, nonce, access_token = sys.argv[1:7]
    oidc = requests.get(f"{base}/.well-known/openid-configuration", timeout=10).json()
    assert oidc["issuer"] == issuer, oidc["issuer"]
    OpenIDProviderMetadata(oidc).validate()
    rfc8414 = requests.get(f"{base}/.well-known/oauth-authorization-server", timeout=10).json()
    AuthorizationServerMetadata(rfc8414).validate()
    print(f"Authlib {authlib.__version__}: both discovery documents are valid")

    jwks_path = oidc["jwks_uri"].removeprefix(issuer)
    jwks = requests.get(f"{base}{jwks_path}", timeout=10).json()
    claims = jwt.decode(
        id_token,
        JsonWebKey.import_key_set(jwks),
        claims_cls=CodeIDToken,
        claims_options={
            "iss": {"essential": True, "value": issuer},
            "aud": {"essential": True, "value": client_id},
        },
        claims_params={"nonce": nonce, "client_id": client_id, "access_token": access_token},
    )
    claims.validate(leeway=30)
    assert claims["nonce"] == nonce, claims
    assert "auth_time" in claims and "sid" in claims, claims
    print(f"Authlib {authlib.__version__}: the ID token is valid (sub {claims['sub']})")

    # A tampered ID token is refused.
    head, payload, sig = id_token.split(".")
    i = len(sig) // 2
    bad = ".".join([head, payload, sig[:i] + ("A" if sig[i] != "A" else "B") + sig[i + 1 :]])
    try:
        jwt.decode(bad, JsonWebKey.import_key_set(jwks), claims_cls=CodeIDToken)
    except Exception:  # noqa: BLE001 - any refusal will do
        print("Authlib: a tampered ID token is refused")
    else:
        raise AssertionError("a tampered ID token verified")


if __name__ == "__main__":
    main()
