// Drives Debian's Chromium with playwright-core: the page tests/interop/spa.html,
// served from a trusted origin and from another one, calls a running Tessera with
// fetch(..., {credentials: 'include'}). Prints what each page could see as JSON
// (the calling test checks it) and saves a screenshot of each page.
//
//   node browser_cors.mjs API TRUSTED_PAGE_URL OTHER_PAGE_URL SCREENSHOT_DIR
import { launchChromium } from './chromium.mjs';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const [api, trustedUrl, otherUrl, shots] = process.argv.slice(2);
if (!shots) {
  console.error('usage: node browser_cors.mjs API TRUSTED_PAGE_URL OTHER_PAGE_URL SCREENSHOT_DIR');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });

const browser = await launchChromium();
try {
  // One browser profile for both pages: the other page has the cookies too.
  const context = await browser.newContext({ viewport: { width: 1100, height: 560 } });
  const console_ = [];
  context.on('console', (m) => console_.push(m.text()));
  const refreshCookie = async () =>
    (await context.cookies()).find((c) => c.name.endsWith('tessera_rt'))?.value ?? null;

  const trusted = await context.newPage();
  await trusted.goto(trustedUrl);
  const trustedCalls = await trusted.evaluate((a) => trustedApp(a), api);
  const cookies = (await context.cookies()).map((c) => ({
    name: c.name, httpOnly: c.httpOnly, secure: c.secure, sameSite: c.sameSite, path: c.path,
  }));
  await trusted.screenshot({ path: join(shots, 'cors-trusted-origin.png'), fullPage: true });

  const before = await refreshCookie();
  const other = await context.newPage();
  await other.goto(otherUrl);
  const otherCalls = await other.evaluate((a) => otherPage(a), api);
  await other.screenshot({ path: join(shots, 'cors-other-origin.png'), fullPage: true });
  const after = await refreshCookie();

  // Back on the trusted page: still signed in.
  const afterwards = await trusted.evaluate((a) => call(a, 'me (cookie), afterwards', '/v1/me'), api);

  console.log(JSON.stringify({
    trusted: trustedCalls,
    other: otherCalls,
    afterwards,
    cookies,
    refreshCookieUnchanged: before !== null && before === after,
    console: console_,
    userAgent: await trusted.evaluate(() => navigator.userAgent),
  }));
} finally {
  await browser.close();
}
