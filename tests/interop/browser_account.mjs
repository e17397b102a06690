// Drives Debian's Chromium with playwright-core through the hosted sign-up,
// sign-in and account pages as two people's devices would: two browser contexts
// (two devices of one user), two tabs of one device, keyboard where a person would
// type. Prints what each step showed as JSON (the calling test checks it) and saves
// a screenshot of every page.
//
//   node browser_account.mjs BASE_URL ACCESS_TOKEN_SECONDS SCREENSHOT_DIR
import { launchChromium } from './chromium.mjs';
import { mkdirSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';

const [base, ttlArg, shots] = process.argv.slice(2);
if (!base || !ttlArg || !shots) {
  console.error('usage: node browser_account.mjs BASE_URL ACCESS_TOKEN_SECONDS SCREENSHOT_DIR');
  process.exit(2);
}
const ttl = Number(ttlArg);
mkdirSync(shots, { recursive: true });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const LAPTOP = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36';
const PHONE = 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1';
const STRONG = 'violet lanterns over the harbour';

const browser = await launchChromium();

// What a page shows, with a screenshot under `shot`.
async function seen(page, response, shot) {
  await page.screenshot({ path: join(shots, shot), fullPage: true });
  return page.evaluate((status) => ({
    status,
    path: location.pathname + location.search,
    heading: document.querySelector('h1')?.textContent ?? null,
    notice: document.querySelector('[role=alert], [role=status]')?.textContent ?? null,
    focused: document.activeElement?.id || null,
    invalid: [...document.querySelectorAll('[aria-invalid=true]')].map((e) => e.id),
    values: Object.fromEntries([...document.querySelectorAll('input:not([type=hidden])')]
      .map((e) => [e.id, e.value])),
    returnTo: document.querySelector('input[name=return_to]')?.value ?? null,
    devices: [...document.querySelectorAll('ul.devices li')].map((li) => li.textContent),
    scripts: document.scripts.length,
    unlabelled: [...document.querySelectorAll('input:not([type=hidden])')]
      .filter((e) => !e.labels || e.labels.length === 0).map((e) => e.id),
  }), response ? response.status() : null);
}

// Submits a form by clicking `button`; returns the final response.
async function submit(page, button) {
  const [response] = await Promise.all([page.waitForNavigation(), page.click(button)]);
  return response;
}

// Fills the form's fields by label-less ids and submits it.
async function fillAndSubmit(page, fields, button = 'main form button[type=submit]') {
  for (const [id, v] of Object.entries(fields)) await page.fill(`#${id}`, v);
  return submit(page, button);
}

// The paths a navigation went through, first to last.
function chain(response) {
  const paths = [];
  for (let r = response.request(); r; r = r.redirectedFrom()) {
    const u = new URL(r.url());
    paths.unshift(u.pathname + u.search);
  }
  return paths;
}

// Every refresh request a context makes, with what it sent and got.
function watchRefreshes(context, into) {
  context.on('response', async (res) => {
    if (!res.url().endsWith('/v1/auth/refresh')) return;
    const sent = await res.request().allHeaders();
    const got = await res.headersArray();
    const rt = (h) => (h.match(/tessera_rt=([^;]*)/) || [])[1] || null;
    into.push({
      status: res.status(),
      sentRefresh: rt(sent.cookie || ''),
      setRefresh: got.filter((h) => h.name.toLowerCase() === 'set-cookie').map((h) => rt(h.value)).find(Boolean) || null,
      bodyHasToken: /access_token|refresh_token"/.test(await res.text().catch(() => '')),
    });
  });
}

const steps = {};
const evil = createServer((req, res) => {
  res.setHeader('content-type', 'text/html');
  res.end(`<!doctype html><title>Prize</title><h1>You won</h1>
    <form method="post" action="${base}/account/signout"><input type="hidden" name="scope" value="global">
    <button type="submit">Claim</button></form>`);
});
await new Promise((r) => evil.listen(0, '127.0.0.1', r));
const evilUrl = `http://127.0.0.1:${evil.address().port}/`;

try {
  const laptop = await browser.newContext({ viewport: { width: 900, height: 700 }, userAgent: LAPTOP });
  const phone = await browser.newContext({ viewport: { width: 390, height: 760 }, userAgent: PHONE, isMobile: true });
  const laptopRefreshes = [];
  watchRefreshes(laptop, laptopRefreshes);

  // A signed-out visitor: / leads to the sign-in page.
  let page = await laptop.newPage();
  let r = await page.goto(`${base}/`);
  steps.home = { ...(await seen(page, r, 'account-signin.png')), chain: chain(r) };

  // Sign up, from the sign-in page's link: a weak password first.
  r = await submit(page, 'a[href^="/signup"]');
  steps.signupForm = await seen(page, r, 'account-signup.png');
  r = await fillAndSubmit(page, { email: 'ada@example.com', username: 'ada', fullname: 'Ada Lovelace', password: 'password123' });
  steps.signupWeak = await seen(page, r, 'account-signup-weak-password.png');
  r = await fillAndSubmit(page, { password: STRONG });
  steps.signedUp = { ...(await seen(page, r, 'account-page.png')), chain: chain(r) };
  steps.cookies = (await laptop.cookies()).map((c) => ({
    name: c.name, path: c.path, httpOnly: c.httpOnly, secure: c.secure, sameSite: c.sameSite,
  }));
  steps.cookiesVisibleToScript = await page.evaluate(() => document.cookie);

  // The same username again, from the phone.
  let phonePage = await phone.newPage();
  await phonePage.goto(`${base}/signup`);
  r = await fillAndSubmit(phonePage, { email: 'other@example.com', username: 'ada', password: STRONG });
  steps.signupTaken = await seen(phonePage, r, 'account-signup-taken.png');

  // Sign in on the phone by keyboard: a wrong password, then the right one.
  r = await phonePage.goto(`${base}/signin`);
  steps.signinForm = await seen(phonePage, r, 'account-signin-phone.png');
  await phonePage.keyboard.type('ada');
  await phonePage.keyboard.press('Tab');
  await phonePage.keyboard.type('not my password');
  [r] = await Promise.all([phonePage.waitForNavigation(), phonePage.keyboard.press('Enter')]);
  steps.signinWrong = await seen(phonePage, r, 'account-signin-wrong-password.png');
  await phonePage.keyboard.type(STRONG); // the password field has the focus again
  [r] = await Promise.all([phonePage.waitForNavigation(), phonePage.keyboard.press('Enter')]);
  steps.phoneSignedIn = await seen(phonePage, r, 'account-page-phone.png');
  await phonePage.close(); // the phone keeps only its cookies: no page refreshes for it

  // The laptop sees both devices.
  r = await page.reload();
  steps.laptopReloaded = await seen(page, r, 'account-page-two-devices.png');

  // Past the access token's expiry: the open page kept the session fresh.
  await sleep(ttl * 2500);
  r = await page.reload();
  steps.afterExpiryOpenPage = await seen(page, r, 'account-page-after-expiry.png');
  steps.laptopRefreshes = laptopRefreshes.slice();

  // The phone had no page open: its access cookie is gone, the server resumes.
  await sleep(ttl * 1000);
  phonePage = await phone.newPage();
  r = await phonePage.goto(`${base}/account`);
  steps.afterExpiryPhone = { ...(await seen(phonePage, r, 'account-page-phone-resumed.png')), chain: chain(r) };
  await phonePage.close();

  // Two tabs of the laptop refresh at the same moment: both requests are held
  // until both are sent, so both present the same refresh token.
  await page.close();
  const held = [];
  let release;
  const bothSent = new Promise((resolve) => { release = resolve; });
  await laptop.route('**/v1/auth/refresh', async (route) => {
    if (held.length >= 2) return route.continue();
    held.push(route);
    if (held.length === 2) release();
    await bothSent;
    await route.continue();
  });
  const before = laptopRefreshes.length;
  const [tab1, tab2] = [await laptop.newPage(), await laptop.newPage()];
  await Promise.all([tab1.goto(`${base}/account`), tab2.goto(`${base}/account`)]);
  await Promise.race([bothSent, sleep(ttl * 3000)]);
  release(); // never hold a lone request for good
  await sleep(1500);
  await laptop.unroute('**/v1/auth/refresh');
  steps.twoTabs = { held: held.length, refreshes: laptopRefreshes.slice(before, before + 2) };
  await sleep(ttl * 1500);
  r = await tab1.reload();
  steps.twoTabsTab1 = await seen(tab1, r, 'account-page-tab1.png');
  r = await tab2.reload();
  steps.twoTabsTab2 = await seen(tab2, r, 'account-page-tab2.png');
  await tab2.close();
  page = tab1;

  // A wrong current password on a form: the form again, saying why.
  await page.fill('#password-current', 'not my password');
  await page.fill('#password-new', 'another violet lantern tonight');
  r = await submit(page, 'form[action="/account/password"] button');
  steps.passwordRefused = await seen(page, r, 'account-password-refused.png');
  r = await page.goto(`${base}/account`);
  await page.fill('#profile-fullname', 'Ada King');
  r = await submit(page, 'form[action="/account/profile"] button');
  steps.profileSaved = await seen(page, r, 'account-profile-saved.png');

  // Sign the phone out from the laptop.
  r = await submit(page, 'ul.devices li:not(:has(.badge)) form button');
  steps.deviceSignedOut = await seen(page, r, 'account-device-signed-out.png');
  phonePage = await phone.newPage();
  r = await phonePage.goto(`${base}/account`);
  steps.phoneAfterSignOut = { ...(await seen(phonePage, r, 'account-phone-signed-out.png')), chain: chain(r) };

  // return_to: followed for the authorization endpoint, with login_hint filled in.
  const authorize = '/oauth/authorize?client_id=demo&state=xyz';
  r = await phonePage.goto(`${base}/signin?return_to=${encodeURIComponent(authorize)}&login_hint=ada`);
  steps.returnToForm = await seen(phonePage, r, 'account-signin-return-to.png');
  await phonePage.keyboard.type(STRONG);
  [r] = await Promise.all([phonePage.waitForNavigation(), phonePage.keyboard.press('Enter')]);
  steps.returnToFollowed = chain(r);
  // ... and ignored for another site.
  r = await phonePage.goto(`${base}/signin?return_to=${encodeURIComponent('https://evil.example/')}`);
  steps.returnToEvilForm = await seen(phonePage, r, 'account-signin-evil-return-to.png');
  r = await fillAndSubmit(phonePage, { login: 'ada', password: STRONG });
  steps.returnToEvil = chain(r);

  // A form on another site posting to the account page is refused.
  const evilPage = await laptop.newPage();
  await evilPage.goto(evilUrl);
  r = await submit(evilPage, 'button');
  steps.offSite = await seen(evilPage, r, 'account-offsite-refused.png');
  await evilPage.close();
  r = await page.goto(`${base}/account`);
  steps.afterOffSite = await seen(page, r, 'account-page-after-offsite.png');

  // Sign out everywhere from the laptop: the phone is signed out too.
  r = await submit(page, 'form[action="/account/signout"]:has(input[value=global]) button');
  steps.signedOutEverywhere = { ...(await seen(page, r, 'account-signed-out.png')), chain: chain(r) };
  steps.cookiesAfterSignOut = (await laptop.cookies()).map((c) => c.name);
  r = await phonePage.goto(`${base}/account`);
  steps.phoneAfterEverywhere = { path: new URL(r.url()).pathname, chain: chain(r) };

  // Sign in again and delete the account: a wrong password first.
  r = await page.goto(`${base}/signin`);
  r = await fillAndSubmit(page, { login: 'ada@example.com', password: STRONG });
  await page.fill('#delete-current-password', 'not my password');
  r = await submit(page, 'form[action="/account/delete"] button');
  steps.deleteRefused = await seen(page, r, 'account-delete-refused.png');
  await page.fill('#delete-current-password', STRONG);
  r = await submit(page, 'form[action="/account/delete"] button');
  steps.deleted = await seen(page, r, 'account-deleted.png');
  steps.cookiesAfterDelete = (await laptop.cookies()).map((c) => c.name);
} finally {
  await browser.close();
  evil.close();
}
console.log(JSON.stringify(steps));
