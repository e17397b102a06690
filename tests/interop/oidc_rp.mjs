// A relying party built on openid-client signs a person in through Tessera with
// the authorization code flow (PKCE S256, state, nonce), in headless Chromium
// driven by playwright-core: sign-in page, consent page, back at the app; then
// a refusal and a second try, userinfo, a refresh, a second authorization (no sign-in, no consent), and
// RP-initiated logout back to the app's post-logout page. Prints what every
// step saw as JSON (the calling test checks it) and saves screenshots.
//
//   node oidc_rp.mjs ISSUER CLIENT_ID RP_PORT LOGIN PASSWORD SCREENSHOT_DIR
import * as oidc from 'openid-client';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { launchChromium } from './chromium.mjs';

const [issuer, clientId, rpPort, login, password, shots] = process.argv.slice(2);
if (!shots) {
  console.error('usage: node oidc_rp.mjs ISSUER CLIENT_ID RP_PORT LOGIN PASSWORD SCREENSHOT_DIR');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });

const app = `http://127.0.0.1:${rpPort}`;
const redirectUri = `${app}/callback`;
const postLogoutUri = `${app}/signed-out`;
const scope = 'openid profile email offline_access';

// Discovery over plain http (a loopback test set-up); the ID token's signature is
// checked against the published keys too, not only its claims.
const config = await oidc.discovery(new URL(issuer), clientId, { redirect_uris: [redirectUri] }, oidc.None(), {
  execute: [oidc.allowInsecureRequests, oidc.enableNonRepudiationChecks],
});
const meta = config.serverMetadata();
const jwks = createRemoteJWKSet(new URL(meta.jwks_uri));

// The app's state: one pending authorization, the sign-ins it completed.
let pending = null;
const signIns = [];
const refusals = [];
let logoutState = null;
const signedOut = [];

function html(res, status, title, body) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8' });
  res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${title}</title>
<style>body{font-family:sans-serif;margin:2rem auto;max-width:36rem;color:#222}
h1{font-size:1.4rem}code{background:#f3f3f3;padding:0 .2rem}</style></head>
<body><h1>${title}</h1>${body}</body></html>`);
}

function leftHalfSha256(value) {
  const d = createHash('sha256').update(value).digest();
  return d.subarray(0, d.length / 2).toString('base64url');
}

async function callback(url) {
  const p = pending;
  pending = null;
  if (!p) throw new Error('a callback without a pending authorization');
  const step = { query: Object.fromEntries(url.searchParams) };
  const tokens = await oidc.authorizationCodeGrant(config, url, {
    pkceCodeVerifier: p.verifier,
    expectedState: p.state,
    expectedNonce: p.nonce,
    idTokenExpected: true,
  });
  step.tokenResponse = {
    keys: Object.keys(tokens).sort(),
    token_type: tokens.token_type,
    expires_in: tokens.expires_in,
    scope: tokens.scope,
    hasRefreshToken: typeof tokens.refresh_token === 'string',
  };
  step.claims = tokens.claims();
  // The same token through jose on its own: RS256 with a published key, typ JWT.
  const { protectedHeader } = await jwtVerify(tokens.id_token, jwks, {
    issuer: meta.issuer,
    audience: clientId,
    algorithms: ['RS256'],
    typ: 'JWT',
  });
  step.idTokenHeader = protectedHeader;
  step.atHashMatches = step.claims.at_hash === leftHalfSha256(tokens.access_token);
  step.nonceMatches = step.claims.nonce === p.nonce;
  step.userinfo = await oidc.fetchUserInfo(config, tokens.access_token, step.claims.sub);
  step.tokens = tokens;
  signIns.push(step);
  return step;
}

const server = createServer(async (req, res) => {
  const url = new URL(req.url, app);
  try {
    if (url.pathname === '/login') {
      const verifier = oidc.randomPKCECodeVerifier();
      pending = { verifier, state: oidc.randomState(), nonce: oidc.randomNonce() };
      const to = oidc.buildAuthorizationUrl(config, {
        redirect_uri: redirectUri,
        scope,
        code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
        code_challenge_method: 'S256',
        state: pending.state,
        nonce: pending.nonce,
      });
      res.writeHead(302, { location: to.href });
      res.end();
    } else if (url.pathname === '/callback' && url.searchParams.has('error')) {
      // A refusal comes back with the request's state and the issuer (RFC 9207).
      const p = pending;
      pending = null;
      refusals.push({
        error: url.searchParams.get('error'),
        stateMatches: p !== null && url.searchParams.get('state') === p.state,
        iss: url.searchParams.get('iss'),
        code: url.searchParams.get('code'),
      });
      html(res, 200, 'Access was not granted', '<p>You chose not to sign in with Tessera.</p>');
    } else if (url.pathname === '/callback') {
      const step = await callback(url);
      html(res, 200, 'Welcome back', `<p>Signed in as <code>${step.userinfo.preferred_username}</code>.</p>`);
    } else if (url.pathname === '/logout') {
      const last = signIns.at(-1);
      logoutState = oidc.randomState();
      const to = oidc.buildEndSessionUrl(config, {
        id_token_hint: last.tokens.id_token,
        post_logout_redirect_uri: postLogoutUri,
        state: logoutState,
      });
      res.writeHead(302, { location: to.href });
      res.end();
    } else if (url.pathname === '/signed-out') {
      signedOut.push(Object.fromEntries(url.searchParams));
      html(res, 200, 'You are signed out of the example app', '<p>Tessera ended your session.</p><p><a href="/login">Sign in again</a></p>');
    } else {
      html(res, 404, 'Not found', '');
    }
  } catch (e) {
    console.error(e);
    html(res, 500, 'The app failed', `<pre>${String(e.message ?? e).replace(/</g, '&lt;')}</pre>`);
  }
});
await new Promise((ok) => server.listen(Number(rpPort), '127.0.0.1', ok));

// The paths a navigation went through (redirects included), first to last.
function chain(response) {
  const urls = [];
  for (let r = response.request(); r; r = r.redirectedFrom()) urls.unshift(r.url());
  return urls;
}

async function view(page, shot) {
  if (shot) await page.screenshot({ path: join(shots, shot), fullPage: true });
  return page.evaluate(() => ({
    url: location.href,
    title: document.title,
    heading: document.querySelector('h1')?.textContent ?? null,
    text: document.body.innerText,
    buttons: [...document.querySelectorAll('button')].map((b) => ({ name: b.name, value: b.value, text: b.textContent })),
  }));
}

const seen = { discovery: { issuer: meta.issuer, end_session_endpoint: meta.end_session_endpoint } };
const browser = await launchChromium();
try {
  const context = await browser.newContext({ viewport: { width: 800, height: 600 } });
  const page = await context.newPage();
  const visited = [];
  page.on('request', (r) => {
    if (r.isNavigationRequest() && r.frame() === page.mainFrame()) visited.push(r.url());
  });

  // 1. The app's sign-in link: Tessera's sign-in page (after a look for a session).
  await page.goto(`${app}/login`);
  await page.waitForURL((u) => u.pathname === '/signin');
  seen.signin = await view(page, 'oidc-signin.png');
  seen.signin.visited = visited.splice(0);
  await page.fill('#login', login);
  await page.fill('#password', password);
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  await page.waitForLoadState();
  seen.consent = await view(page, 'oidc-consent.png');
  seen.consent.visited = visited.splice(0);

  // 2. Deny: back at the app with access_denied; asking again shows the consent
  // page again (a refusal is not remembered), without the sign-in page.
  const [denied] = await Promise.all([page.waitForNavigation(), page.click('button[value=deny]')]);
  seen.denied = { ...(await view(page, null)), status: denied.status(), chain: chain(denied), refusals };
  visited.splice(0);
  await page.goto(`${app}/login`);
  await page.waitForURL((u) => u.pathname === '/oauth/authorize');
  seen.consentAgain = { ...(await view(page, null)), visited: visited.splice(0) };

  // 3. Allow: back at the app, which redeems the code.
  const [allowed] = await Promise.all([page.waitForNavigation(), page.click('button[value=allow]')]);
  seen.callback = { ...(await view(page, 'oidc-callback.png')), status: allowed.status(), chain: chain(allowed) };
  visited.splice(0);
  const first = signIns[0];
  if (!first) throw new Error('the app completed no sign-in');

  // 4. A refresh with the refresh token the code gave.
  const refreshed = await oidc.refreshTokenGrant(config, first.tokens.refresh_token);
  seen.refresh = {
    keys: Object.keys(refreshed).sort(),
    scope: refreshed.scope,
    newRefreshToken: refreshed.refresh_token !== first.tokens.refresh_token,
    newAccessToken: refreshed.access_token !== first.tokens.access_token,
  };
  seen.refresh.userinfo = await oidc.fetchUserInfo(config, refreshed.access_token, first.claims.sub);

  // 5. A second sign-in from the app: no sign-in page, no consent page.
  const [again] = await Promise.all([page.waitForNavigation({ url: (u) => u.pathname === '/callback' }), page.goto(`${app}/login`)]);
  seen.second = { ...(await view(page, null)), status: again.status(), visited: visited.splice(0) };
  const second = signIns[1];
  if (!second) throw new Error('the second sign-in did not complete');
  const secondRefreshed = await oidc.refreshTokenGrant(config, second.tokens.refresh_token);

  // The account page at Tessera lists the app the user allowed.
  await page.goto(`${meta.issuer}/account`);
  await page.waitForURL((u) => u.pathname === '/account');
  seen.accountApps = await view(page, 'oidc-account-apps.png');
  visited.splice(0);

  // 6. RP-initiated logout with the latest ID token; the browser comes back here.
  const [out] = await Promise.all([page.waitForNavigation({ url: (u) => u.pathname === '/signed-out' }), page.goto(`${app}/logout`)]);
  seen.logout = {
    ...(await view(page, 'oidc-signed-out.png')),
    status: out.status(),
    visited: visited.splice(0),
    sentState: logoutState,
    received: signedOut,
  };
  // The logged-out session's refresh token is dead; the browser is signed out.
  try {
    await oidc.refreshTokenGrant(config, secondRefreshed.refresh_token);
    seen.logout.refreshAfter = 'accepted';
  } catch (e) {
    seen.logout.refreshAfter = e.error ?? e.code ?? String(e);
  }
  try {
    await oidc.refreshTokenGrant(config, refreshed.refresh_token);
    seen.logout.firstSessionRefreshAfter = 'accepted';
  } catch (e) {
    seen.logout.firstSessionRefreshAfter = e.error ?? e.code ?? String(e);
  }
  await page.goto(`${app}/login`);
  await page.waitForURL((u) => u.pathname === '/signin');
  seen.afterLogout = { path: new URL(page.url()).pathname, visited: visited.splice(0) };

  seen.signIns = signIns.map((s) => ({
    query: s.query,
    tokenResponse: s.tokenResponse,
    claims: s.claims,
    idTokenHeader: s.idTokenHeader,
    atHashMatches: s.atHashMatches,
    nonceMatches: s.nonceMatches,
    userinfo: s.userinfo,
    refreshToken: s.tokens.refresh_token,
  }));
} finally {
  await browser.close();
  server.close();
}
console.log(JSON.stringify(seen));
