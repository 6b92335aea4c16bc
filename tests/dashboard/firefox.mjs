// The dashboard's core path in Debian's headless firefox-esr, driven by puppeteer-core over
// WebDriver BiDi (playwright cannot drive a stock Firefox): the token prompt, every plugin (the
// failing one with its reason), a tool run from its generated form, the call in the live log —
// the event stream read with fetch() and a ReadableStream, the part most likely to differ from
// chromium. Run by tests/mcp/dashboard.rs after dashboard.mjs, against the same server.
//
// Input (environment): as dashboard.mjs — DASHBOARD_URL, DASHBOARD_TOKEN, DASHBOARD_EXPECT
// (JSON: `plugins`, `failed`: {name, reason}), PLUGBOARD_TEST_OUTPUT (the screenshot goes to
// its dashboard/ folder as firefox.png); FIREFOX (default /usr/bin/firefox-esr).
// Output: one JSON line `{"ok": true, "browser": "firefox/…", "checks": [...]}`; exit 1 on a failure.

import { join } from "node:path";
import puppeteer from "puppeteer-core";
import { TIMEOUT, check, checks, expect, fail, out, token, url } from "./driver.mjs";
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const browser = await puppeteer.launch({
  browser: "firefox",
  executablePath: process.env.FIREFOX || "/usr/bin/firefox-esr",
  headless: true,
  defaultViewport: { width: 1366, height: 900 },
});
const requested = []; // every URL the page asked for
const problems = []; // console errors, page errors, CSP violations
let page;
let summary;
try {
  page = await browser.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on("request", (r) => requested.push(r.url()));
  page.on("console", (m) => {
    // As in dashboard.mjs: a 4xx the page asked for on purpose is not a fault of the page.
    if (m.type() === "error" && !/status of 4\d\d/.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message || e}`));
  await page.evaluateOnNewDocument(() => {
    document.addEventListener("securitypolicyviolation", (e) =>
      console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`),
    );
  });

  // The page's CSP (script-src 'self') refuses puppeteer's own waiting helpers (waitForSelector,
  // waitForFunction, locators: they build functions with `new Function` in the page, and
  // Firefox, unlike chromium, holds them to the page's CSP) — so wait by polling evaluate(),
  // which runs privileged, and click and type through element handles.
  const waitFor = async (what, fn, ...args) => {
    const deadline = Date.now() + TIMEOUT;
    for (;;) {
      const value = await page.evaluate(fn, ...args);
      if (value) return value;
      if (Date.now() > deadline) fail(`timed out after ${TIMEOUT} ms waiting for ${what}`);
      await sleep(100);
    }
  };
  const present = (selector) => waitFor(selector, (s) => document.querySelector(s) !== null, selector);
  const visible = (selector) =>
    waitFor(
      `${selector} to be visible`,
      (s) => {
        const el = document.querySelector(s);
        return Boolean(el && el.getClientRects().length && getComputedStyle(el).visibility !== "hidden");
      },
      selector,
    );
  const textOf = (selector) => page.$eval(selector, (el) => el.innerText);
  const click = async (selector) => {
    await visible(selector);
    await page.click(selector);
  };
  const fill = async (selector, text) => {
    await visible(selector);
    await page.$eval(selector, (el) => {
      el.value = "";
    });
    await page.type(selector, text);
  };

  // The page loads without the token and asks for it on the first 401.
  await page.goto(url);
  await visible("dialog#login");
  check("login prompt shown on 401");
  await fill("#login-token", token);
  await click("dialog#login button[type=submit]");
  await waitFor("the page to be ready", () => document.documentElement.dataset.ready === "1");
  check("ready after login");
  const stored = await page.evaluate(() => sessionStorage.getItem("plugboard.token"));
  if (stored !== token) fail("the token is not in sessionStorage");
  check("token in sessionStorage");

  // Every plugin, the failing one as failed with its reason.
  for (const name of expect.plugins || []) {
    await present(`#plugins tr[data-plugin="${name}"]`);
  }
  check(`plugins shown: ${(expect.plugins || []).join(", ")}`);
  if (expect.failed) {
    const row = `#plugins tr[data-plugin="${expect.failed.name}"]`;
    const state = await page.$eval(row, (tr) => tr.dataset.state);
    if (state !== "failed") fail(`${expect.failed.name} is shown as ${state}, not failed`);
    const reason = await textOf(`${row} .reason`);
    if (!reason.includes(expect.failed.reason)) fail(`${expect.failed.name}'s reason is ${JSON.stringify(reason)}`);
    await visible(`${row} .badge.bad`);
    check(`${expect.failed.name} shown as failed: ${reason}`);
  }

  // A tool run from its generated form: filter, open, fill, call.
  const echo = 'details.tool[data-tool="testkit_echo"]';
  await fill("#tool-filter", "echo");
  await click(`${echo} summary`);
  await fill(`${echo} [data-field="text"] :is(input, textarea)`, "hello from firefox");
  await fill(`${echo} [data-field="repeat"] input`, "2");
  await click(`${echo} button[type=submit]`);
  await present(`${echo} .result.is-ok`);
  const text = await textOf(`${echo} .result.is-ok`);
  if (!text.includes("hello from firefoxhello from firefox")) fail(`echo answered ${JSON.stringify(text)}`);
  check("testkit_echo called from its form");

  // The call in the live log: only the event stream (fetch + ReadableStream) adds rows.
  await present('#log tr.call[data-tool="testkit_echo"][data-face="dashboard"][data-outcome="ok"]');
  check(`the call appears in the live log (face dashboard, ok; stream ${JSON.stringify(await textOf("#conn"))})`);

  await sleep(300);
  await page.screenshot({ path: join(out, "firefox.png") });

  const leaked = requested.filter((u) => u.includes(token) || decodeURIComponent(u).includes(token));
  if (leaked.length) fail(`the token appeared in a URL: ${leaked.length} requests`);
  check(`the token is in none of the ${requested.length} requested URLs`);
  if (problems.length) fail(`the page reported errors:\n${problems.join("\n")}`);
  check("no console errors, page errors or CSP violations");
  summary = { ok: true, browser: await browser.version(), checks, requests: requested.length, screenshots: out };
} catch (err) {
  await page?.screenshot({ path: join(out, "firefox-failure.png"), fullPage: true }).catch(() => {});
  summary = { ok: false, error: String(err.message || err), checks, problems };
} finally {
  await browser.close();
}
console.log(JSON.stringify(summary));
process.exit(summary.ok ? 0 : 1);
