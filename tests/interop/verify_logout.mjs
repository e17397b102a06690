// Node's jose package verifies back-channel logout tokens (OpenID Connect
// Back-Channel Logout 1.0 §2.4) against Tessera's published keys: RS256 only,
// `typ: logout+jwt`, issuer, audience, and the claims a logout token must carry.
// A copy of each token with one signature byte changed must be refused.
//
// Usage: node verify_logout.mjs CASES.json
// CASES.json: {jwks_uri, issuer, cases: [{token, audience}]}.
// Prints, for each case: {header, payload} or {error}, and whether the tampered
// copy was refused.
import { readFileSync } from 'node:fs';
import { createRemoteJWKSet, jwtVerify } from 'jose';

const input = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const jwks = createRemoteJWKSet(new URL(input.jwks_uri));

function tamper(token) {
  const [head, payload, sig] = token.split('.');
  const i = Math.floor(sig.length / 2);
  const swapped = sig[i] === 'A' ? 'B' : 'A';
  return [head, payload, sig.slice(0, i) + swapped + sig.slice(i + 1)].join('.');
}

async function verify(token, audience) {
  const { payload, protectedHeader } = await jwtVerify(token, jwks, {
    issuer: input.issuer,
    audience,
    algorithms: ['RS256'],
    typ: 'logout+jwt',
    requiredClaims: ['iat', 'exp', 'jti', 'sub', 'sid', 'events'],
  });
  return { header: protectedHeader, payload };
}

const out = [];
for (const c of input.cases) {
  let seen;
  try {
    seen = await verify(c.token, c.audience);
  } catch (e) {
    seen = { error: `${e.code ?? ''} ${e.message}` };
  }
  try {
    await verify(tamper(c.token), c.audience);
    seen.tamperedRefused = false;
  } catch (e) {
    seen.tamperedRefused = e.code === 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED';
  }
  out.push(seen);
}
console.log(JSON.stringify(out));
