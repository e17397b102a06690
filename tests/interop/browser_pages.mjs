// Drives Debian's Chromium with playwright-core through the account pages the
// mailed links open, as a person would: keyboard only, no JavaScript on the pages.
// Prints what each step showed as JSON (the calling test checks it) and saves a
// screenshot of every page.
//
//   node browser_pages.mjs forgot  PAGE_URL EMAIL        SCREENSHOT_DIR
//   node browser_pages.mjs reset   LINK     WEAK STRONG  SCREENSHOT_DIR
//   node browser_pages.mjs confirm LINK                  SCREENSHOT_DIR
//   node browser_pages.mjs signup  SITE EMAIL USERNAME PASSWORD SCREENSHOT_DIR
//     (sign up, sign in before confirming, ask for a new confirmation link)
//   node browser_pages.mjs signin  SITE LOGIN PASSWORD   SCREENSHOT_DIR
import { launchChromium } from './chromium.mjs';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const [mode, url, ...rest] = process.argv.slice(2);
const shots = rest.at(-1);
if (!mode || !url || !shots) {
  console.error('usage: node browser_pages.mjs forgot|reset|confirm|signup|signin URL [ARGS...] SCREENSHOT_DIR');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });

const browser = await launchChromium();

// What a page shows: its status, title, notice and which field has the focus.
async function seen(page, response, shot) {
  await page.screenshot({ path: join(shots, shot), fullPage: true });
  return page.evaluate((status) => ({
    status,
    title: document.title,
    heading: document.querySelector('h1')?.textContent ?? null,
    notice: document.querySelector('[role=alert], [role=status]')?.textContent ?? null,
    focused: document.activeElement?.id || null,
    scripts: document.scripts.length,
    text: document.body.innerText,
  }), response ? response.status() : null);
}

// Types into the focused field and presses Enter, as a keyboard user submits.
async function typeAndSubmit(page, text) {
  await page.keyboard.type(text);
  const [response] = await Promise.all([page.waitForNavigation(), page.keyboard.press('Enter')]);
  return response;
}

// Fills the form's fields by id, then presses Enter in the last one.
async function fillAndSubmit(page, fields) {
  for (const [id, value] of Object.entries(fields)) {
    await page.fill(`#${id}`, value);
  }
  const [response] = await Promise.all([page.waitForNavigation(), page.keyboard.press('Enter')]);
  return response;
}

// Signs in on SITE/signin; what the page answered and where the browser landed.
async function signIn(page, site, login, password, shot) {
  steps.signinForm = await seen(page, await page.goto(`${site}/signin`), `${shot}-form.png`);
  const answer = await fillAndSubmit(page, { login, password });
  steps.signedIn = await seen(page, answer, `${shot}.png`);
  steps.signedIn.path = new URL(page.url()).pathname;
}

const steps = {};
try {
  const context = await browser.newContext({ viewport: { width: 800, height: 600 }, javaScriptEnabled: true });
  const page = await context.newPage();
  if (mode === 'signup') {
    // The sign-up page, then a sign-in before the address is confirmed.
    const [email, username, password] = rest;
    steps.form = await seen(page, await page.goto(`${url}/signup`), 'page-signup.png');
    steps.sent = await seen(page, await fillAndSubmit(page, { email, username, password }), 'page-signup-sent.png');
    await signIn(page, url, username, password, 'page-signin-unconfirmed');
    // The refusal offers a new link; ask for one.
    const [asked] = await Promise.all([
      page.waitForNavigation(),
      page.click('text=Send me a new confirmation link'),
    ]);
    steps.resendForm = await seen(page, asked, 'page-resend-verification.png');
    steps.resent = await seen(page, await fillAndSubmit(page, { email }), 'page-resend-verification-sent.png');
  } else if (mode === 'signin') {
    const [login, password] = rest;
    await signIn(page, url, login, password, 'page-signin-confirmed');
  } else if (mode === 'forgot') {
    const [email] = rest;
    steps.form = await seen(page, await page.goto(url), 'page-forgot-password.png');
    steps.sent = await seen(page, await typeAndSubmit(page, email), 'page-forgot-password-sent.png');
  } else if (mode === 'reset') {
    const [weak, strong] = rest;
    steps.form = await seen(page, await page.goto(url), 'page-reset-password.png');
    steps.refused = await seen(page, await typeAndSubmit(page, weak), 'page-reset-password-refused.png');
    // The form comes back with the field to correct; focus it as a user would.
    await page.focus('#new_password');
    steps.done = await seen(page, await typeAndSubmit(page, strong), 'page-reset-password-done.png');
  } else if (mode === 'confirm') {
    steps.form = await seen(page, await page.goto(url), 'page-verify-email.png');
    // Tab to the one button and press it.
    await page.keyboard.press('Tab');
    steps.buttonFocused = await page.evaluate(() => document.activeElement?.tagName);
    const [response] = await Promise.all([page.waitForNavigation(), page.keyboard.press('Enter')]);
    steps.done = await seen(page, response, 'page-verify-email-done.png');
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(steps));
