// An Express service that accepts Tessera access tokens instead of verifying
// its own `jsonwebtoken` tokens: `GET /hello` answers the caller's `sub`.
//
//   TESSERA_ISSUER=http://127.0.0.1:8080 npm start
//
// Environment: TESSERA_ISSUER (required: exactly the `iss` of the tokens),
// TESSERA_AUDIENCE (default tessera), HOST (default 127.0.0.1), PORT (default
// 3000), REVOCATION_POLL_MS (default 2000), CLOCK_TOLERANCE_S (default 30), and
// ACCESS_TOKEN_SECRET only during a move (see below).
//
// What replaces `jwt.verify(token, process.env.ACCESS_TOKEN_SECRET)`:
// - the public keys come from the issuer's JWKS (jose's createRemoteJWKSet
//   caches them and fetches again when a token names a key it does not know, so
//   a key rotation needs no restart);
// - jwtVerify checks the signature with the algorithms Tessera signs with only
//   (never `none`, never HS256 with a public key), `typ: at+jwt`, the issuer,
//   the audience and the times;
// - the revocation feed `GET /v1/revocations?since=` is polled, so a session that
//   logged out (or was revoked for reuse) stops working within one poll. If the
//   feed cannot be read for 30 s, tokens are refused with 503 rather than trusted;
// - while Tessera still signs with the old app's ACCESS_TOKEN_SECRET (HS256, see
//   docs/migrating-from-node.md), setting it here accepts those tokens too, with
//   exactly the same checks. Remove it once Tessera signs with its own keys.
import cookieParser from 'cookie-parser';
import express from 'express';
import { createRemoteJWKSet, decodeProtectedHeader, errors, jwtVerify } from 'jose';

const ISSUER = process.env.TESSERA_ISSUER;
if (!ISSUER) {
  console.error('set TESSERA_ISSUER to the issuer URL, e.g. http://127.0.0.1:8080');
  process.exit(2);
}
const BASE = ISSUER.replace(/\/+$/, '');
const AUDIENCE = process.env.TESSERA_AUDIENCE ?? 'tessera';
const HOST = process.env.HOST ?? '127.0.0.1';
const PORT = Number(process.env.PORT ?? 3000);
const POLL_MS = Number(process.env.REVOCATION_POLL_MS ?? 2000);
const CLOCK_TOLERANCE_S = Number(process.env.CLOCK_TOLERANCE_S ?? 30);
const STALE_AFTER_MS = 30_000;
const ALGORITHMS = ['EdDSA', 'ES256', 'RS256'];
const LEGACY_SECRET = process.env.ACCESS_TOKEN_SECRET
  ? new TextEncoder().encode(process.env.ACCESS_TOKEN_SECRET)
  : null;

const jwks = createRemoteJWKSet(new URL(`${BASE}/.well-known/jwks.json`), {
  // An unknown kid fetches the JWKS again, at most every 10 s.
  cooldownDuration: 10_000,
  cacheMaxAge: 5 * 60_000,
});

// The revocation feed: revoked session id -> time until which its tokens matter.
const revoked = new Map();
let cursor = '0';
let feedReadAt = 0;

async function readFeed() {
  for (let page = 0; page < 100; page++) {
    const res = await fetch(`${BASE}/v1/revocations?since=${encodeURIComponent(cursor)}`, {
      signal: AbortSignal.timeout(10_000),
    });
    if (!res.ok) throw new Error(`revocation feed: HTTP ${res.status}`);
    const body = await res.json();
    for (const { sid, until } of body.revoked) revoked.set(sid, until);
    cursor = body.cursor;
    if (body.revoked.length === 0) break;
  }
  const now = Date.now() / 1000;
  for (const [sid, until] of revoked) {
    if (until + CLOCK_TOLERANCE_S < now) revoked.delete(sid);
  }
  feedReadAt = Date.now();
}

function refuse(res, status, description) {
  res.set('Cache-Control', 'no-store');
  if (status === 401) {
    res.set('WWW-Authenticate', `Bearer error="invalid_token", error_description="${description}"`);
  } else {
    res.set('Retry-After', '2');
  }
  const error = status === 401 ? 'invalid_token' : 'overloaded';
  return res.status(status).json({ error, error_description: description });
}

// The tutorial's `verifyJWT`, for Tessera tokens: from the access cookie (when
// this service shares Tessera's site) or the Authorization header.
async function verifyJWT(req, res, next) {
  const header = req.get('authorization') ?? '';
  const token =
    req.cookies?.['__Host-tessera_at'] ??
    req.cookies?.tessera_at ??
    (header.toLowerCase().startsWith('bearer ') ? header.slice(7).trim() : undefined);
  if (!token) return refuse(res, 401, 'an access token is required');
  if (Date.now() - feedReadAt > STALE_AFTER_MS) {
    return refuse(res, 503, 'token revocation status is unknown; retry shortly');
  }
  try {
    // HS256 only with the configured secret, never with a key from the JWKS.
    const legacy = LEGACY_SECRET !== null && decodeProtectedHeader(token).alg === 'HS256';
    const { payload } = await jwtVerify(token, legacy ? LEGACY_SECRET : jwks, {
      issuer: ISSUER,
      audience: AUDIENCE,
      algorithms: legacy ? ['HS256'] : ALGORITHMS,
      typ: 'at+jwt',
      clockTolerance: CLOCK_TOLERANCE_S,
      requiredClaims: ['sub', 'sid', 'exp', 'iat'],
    });
    const until = revoked.get(payload.sid);
    if (until !== undefined && until + CLOCK_TOLERANCE_S > Date.now() / 1000) {
      return refuse(res, 401, 'the session of this access token has ended');
    }
    req.user = payload;
    return next();
  } catch (e) {
    if (e instanceof errors.JWTExpired) {
      return refuse(res, 401, 'the access token expired; refresh it');
    }
    return refuse(res, 401, 'the access token is not valid');
  }
}

const app = express();
app.disable('x-powered-by');
app.use(cookieParser());

app.get('/hello', verifyJWT, (req, res) => {
  res.json({ sub: req.user.sub });
});

// Start only once the keys and the whole feed could be read.
await jwks.reload();
await readFeed();
setInterval(() => {
  readFeed().catch((e) => console.warn(`tessera revocation feed unreachable: ${e.message}`));
}, POLL_MS);
app.listen(PORT, HOST, () => {
  console.log(`express example on http://${HOST}:${PORT}`);
});
