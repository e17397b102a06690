// Node's jose package (createRemoteJWKSet, jwtVerify) verifies Tessera access
// tokens, one case per signing algorithm, with issuer and audience checks.
//
// Usage: node verify_jose.mjs CASES.json
// Each case: {alg, jwks_uri, issuer, audience, token, sub, secret (HS256 only)}.

import { readFileSync } from 'node:fs';
import { createRemoteJWKSet, jwtVerify } from 'jose';

const pkg = JSON.parse(readFileSync(new URL('./node_modules/jose/package.json', import.meta.url)));

async function mustFail(what, code, promise) {
  try {
    await promise;
  } catch (e) {
    if (e.code === code) return;
    throw new Error(`${what}: expected ${code}, got ${e.code ?? e}`);
  }
  throw new Error(`${what}: expected ${code}, but it verified`);
}

function tamper(token) {
  const [head, payload, sig] = token.split('.');
  const i = Math.floor(sig.length / 2);
  const swapped = sig[i] === 'A' ? 'B' : 'A';
  return [head, payload, sig.slice(0, i) + swapped + sig.slice(i + 1)].join('.');
}

async function check(c) {
  let key;
  if (c.alg === 'HS256') {
    key = new TextEncoder().encode(c.secret);
    const published = (await (await fetch(c.jwks_uri)).json()).keys;
    // Only the RS256 key of ID tokens is published, never the HMAC secret.
    if (published.some((k) => k.kty !== 'RSA')) throw new Error('an HMAC secret must never be published');
  } else {
    key = createRemoteJWKSet(new URL(c.jwks_uri));
  }
  const options = {
    issuer: c.issuer,
    audience: c.audience,
    algorithms: [c.alg],
    typ: 'at+jwt',
    requiredClaims: ['exp', 'iat', 'sub'],
    clockTolerance: 30,
  };
  const { payload, protectedHeader } = await jwtVerify(c.token, key, options);
  if (payload.sub !== c.sub) throw new Error(`sub ${payload.sub} != ${c.sub}`);
  if (protectedHeader.alg !== c.alg) throw new Error(`alg ${protectedHeader.alg} != ${c.alg}`);
  if (!payload.sid || payload.client_id !== 'tessera') throw new Error('sid/client_id missing');
  await mustFail('wrong audience', 'ERR_JWT_CLAIM_VALIDATION_FAILED',
    jwtVerify(c.token, key, { ...options, audience: 'someone-else' }));
  await mustFail('wrong issuer', 'ERR_JWT_CLAIM_VALIDATION_FAILED',
    jwtVerify(c.token, key, { ...options, issuer: 'https://evil.example' }));
  await mustFail('tampered signature', 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED',
    jwtVerify(tamper(c.token), key, options));
  const source = c.alg === 'HS256' ? 'the shared secret' : c.jwks_uri;
  console.log(`jose ${pkg.version}: ${c.alg} token verified with ${source}`);
}

const cases = JSON.parse(readFileSync(process.argv[2], 'utf8'));
for (const c of cases) {
  await check(c);
}
console.log(`jose: ${cases.length} algorithms ok`);
