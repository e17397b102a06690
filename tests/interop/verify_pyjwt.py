"""PyJWT's PyJWKClient verifies Tessera access tokens, one case per signing algorithm.

Usage: python3 verify_pyjwt.py CASES.json
Each case: {alg, jwks_uri, issuer, audience, token, sub, secret (HS256 only)}.
"""

import json
import sys
import urllib.request

import jwt
from jwt import PyJWKClient


def must_fail(what, expected, fn):
    try:
        fn()
    except expected:
        return
    except Exception as e:  # noqa: BLE001 - any other error is a wrong answer
        raise AssertionError(f"{what}: expected {expected.__name__}, got {e!r}") from e
    raise AssertionError(f"{what}: expected {expected.__name__}, but it verified")


def tamper(token):
    head, payload, sig = token.split(".")
    i = len(sig) // 2
    sig = sig[:i] + ("A" if sig[i] != "A" else "B") + sig[i + 1 :]
    return ".".join([head, payload, sig])


def check(case):
    alg, token = case["alg"], case["token"]
    if alg == "HS256":
        key = case["secret"]
        with urllib.request.urlopen(case["jwks_uri"]) as r:
            published = json.load(r)["keys"]
        # Only the RS256 key of ID tokens is published, never the HMAC secret.
        assert all(k["kty"] == "RSA" for k in published), f"an HMAC secret must never be published: {published}"
    else:
        signing = PyJWKClient(case["jwks_uri"]).get_signing_key_from_jwt(token)
        assert signing.algorithm_name == alg, (signing.algorithm_name, alg)
        key = signing.key
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt" and header["alg"] == alg, header

    def decode(tok=token, audience=case["audience"], issuer=case["issuer"]):
        return jwt.decode(
            tok,
            key,
            algorithms=[alg],
            audience=audience,
            issuer=issuer,
            leeway=30,
            options={"require": ["exp", "iat", "iss", "aud", "sub"]},
        )

    claims = decode()
    assert claims["sub"] == case["sub"], claims
    assert claims["sid"] and claims["client_id"] == "tessera", claims
    must_fail("wrong audience", jwt.InvalidAudienceError, lambda: decode(audience="someone-else"))
    must_fail("wrong issuer", jwt.InvalidIssuerError, lambda: decode(issuer="https://evil.example"))
    must_fail("tampered signature", jwt.InvalidSignatureError, lambda: decode(tok=tamper(token)))
    source = "the shared secret" if alg == "HS256" else case["jwks_uri"]
    print(f"PyJWT {jwt.__version__}: {alg} token verified with {source}")


def main():
    with open(sys.argv[1]) as f:
        cases = json.load(f)
    for case in cases:
        check(case)
    print(f"PyJWT: {len(cases)} algorithms ok")


if __name__ == "__main__":
    main()
