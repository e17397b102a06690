// Drives Debian's Chromium with playwright-core through the account pages the
// mailed links open, as a person would: keyboard only, no JavaScript on the pages.
// Prints what each step showed as JSON (the calling test checks it) and saves a
// screenshot of every page.
//
//   node browser_pages.mjs forgot  PAGE_URL EMAIL        SCREENSHOT_DIR
//   node browser_pages.mjs reset   LINK     WEAK STRONG  SCREENSHOT_DIR
//   node browser_pages.mjs confirm LINK                  SCREENSHOT_DIR
import { launchChromium } from './chromium.mjs';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const [mode, url, ...rest] = process.argv.slice(2);
const shots = rest.at(-1);
if (!mode || !url || !shots) {
  console.error('usage: node browser_pages.mjs forgot|reset|confirm URL [ARGS...] SCREENSHOT_DIR');
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

const steps = {};
try {
  const context = await browser.newContext({ viewport: { width: 800, height: 600 }, javaScriptEnabled: true });
  const page = await context.newPage();
  const opened = await page.goto(url);
  if (mode === 'forgot') {
    const [email] = rest;
    steps.form = await seen(page, opened, 'page-forgot-password.png');
    steps.sent = await seen(page, await typeAndSubmit(page, email), 'page-forgot-password-sent.png');
  } else if (mode === 'reset') {
    const [weak, strong] = rest;
    steps.form = await seen(page, opened, 'page-reset-password.png');
    steps.refused = await seen(page, await typeAndSubmit(page, weak), 'page-reset-password-refused.png');
    // The form comes back with the field to correct; focus it as a user would.
    await page.focus('#new_password');
    steps.done = await seen(page, await typeAndSubmit(page, strong), 'page-reset-password-done.png');
  } else if (mode === 'confirm') {
    steps.form = await seen(page, opened, 'page-verify-email.png');
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
