// The dashboard driven in headless chromium as a person would: the token prompt, the
// plugins (a failing one shown with its reason), a tool run from its generated form, the
// call in the live log, a tool error and a problem document, a reload, a consensus (each
// answer as it lands, then the synthesis) and the providers panel after it, the phone layout,
// "forget token". Run by tests/mcp/dashboard.rs against `plugboard serve --http` with a token.
//
// Input (environment): DASHBOARD_URL, DASHBOARD_TOKEN, DASHBOARD_EXPECT (JSON: `plugins`,
// the names that must show; `failed`: {name, reason}; `consensus`: {prompt, order: [{provider,
// says}] as the answers must land, apart_ms between them at least, synthesis: {heading, text,
// agreed}}; `providers`: {name: requests} the providers panel must reach after it),
// PLUGBOARD_TEST_OUTPUT (screenshots go to its dashboard/ folder), CHROMIUM (default
// /usr/bin/chromium).
// Output: one JSON line `{"ok": true, "checks": [...], "providers": {name: {requests, tokens,
// cost}}, "providers_total", ...}` (the providers panel's cells as shown, for the caller to
// check against the API); exit status 1 on a failure.

import { join } from "node:path";
import { chromium } from "playwright-core";
import { TIMEOUT, check, checks, expect, fail, out, token, url } from "./driver.mjs";

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox"],
});
const requested = []; // every URL the page asked for
const problems = []; // console errors, page errors, CSP violations
let summary;
const shown = {}; // the providers panel's cells, by provider
let shownTotal;
try {
  const context = await browser.newContext({ viewport: { width: 1366, height: 900 }, colorScheme: "light" });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on("request", (r) => requested.push(r.url()));
  page.on("console", (m) => {
    // A 4xx the page asked for on purpose (the 401 before the login, a 400 problem) is
    // logged by chromium as a failed load: not a fault of the page.
    if (m.type() === "error" && !/status of 4\d\d/.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  await page.addInitScript(() => {
    document.addEventListener("securitypolicyviolation", (e) =>
      console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`),
    );
  });

  // The page loads without the token, asks for it on the first 401, refuses a wrong one.
  await page.goto(url);
  const dialog = page.locator("dialog#login");
  await dialog.waitFor({ state: "visible" });
  check("login prompt shown on 401");
  await page.fill("#login-token", "not-the-token");
  await page.press("#login-token", "Enter");
  await page.locator("#login-error").waitFor({ state: "visible" });
  check("wrong token refused");
  await page.fill("#login-token", token);
  await page.click("dialog#login button[type=submit]");
  await page.waitForFunction(() => document.documentElement.dataset.ready === "1");
  check("ready after login");
  const stored = await page.evaluate(() => ({
    session: sessionStorage.getItem("plugboard.token"),
    local: Object.keys(localStorage).length,
  }));
  if (stored.session !== token) fail("the token is not in sessionStorage");
  if (stored.local !== 0) fail("something was written to localStorage");
  check("token in sessionStorage only");

  // Every plugin, the failing one as failed with its reason.
  for (const name of expect.plugins || []) {
    await page.locator(`#plugins tr[data-plugin="${name}"]`).waitFor();
  }
  check(`plugins shown: ${(expect.plugins || []).join(", ")}`);
  if (expect.failed) {
    const row = page.locator(`#plugins tr[data-plugin="${expect.failed.name}"]`);
    if ((await row.getAttribute("data-state")) !== "failed") fail(`${expect.failed.name} is not shown as failed`);
    const reason = await row.locator(".reason").innerText();
    if (!reason.includes(expect.failed.reason)) fail(`${expect.failed.name}'s reason is ${JSON.stringify(reason)}`);
    if (!(await row.locator(".badge.bad").isVisible())) fail("the failed badge is not visible");
    check(`${expect.failed.name} shown as failed: ${reason}`);
  }

  // A tool run from its generated form: filter, open, fill, call.
  await page.fill("#tool-filter", "echo");
  const echo = page.locator('details.tool[data-tool="testkit_echo"]');
  await echo.locator("summary").click();
  await echo.locator('[data-field="text"] input, [data-field="text"] textarea').fill("hello from the browser");
  await echo.locator('[data-field="repeat"] input').fill("2");
  await echo.locator("button[type=submit]").click();
  const ok = echo.locator(".result.is-ok");
  await ok.waitFor();
  const text = await ok.innerText();
  if (!text.includes("hello from the browserhello from the browser")) fail(`echo answered ${JSON.stringify(text)}`);
  check("testkit_echo called from its form");

  // The call in the live log, as the dashboard face.
  await page.locator('#log tr.call[data-tool="testkit_echo"][data-face="dashboard"][data-outcome="ok"]').waitFor();
  check("the call appears in the live log (face dashboard, ok)");

  // A problem document: the required `text` left empty is refused with a 400.
  await echo.locator('[data-field="text"] input, [data-field="text"] textarea').fill("");
  await echo.locator("button[type=submit]").click();
  const problem = echo.locator('.problem[data-status="400"]');
  await problem.waitFor();
  const ptext = await problem.innerText();
  if (!/Invalid arguments/.test(ptext)) fail(`the problem reads ${JSON.stringify(ptext)}`);
  check("a 400 problem document shown with its title and detail");
  await page.locator('#log tr.call[data-tool="testkit_echo"][data-outcome="invalid_arguments"]').waitFor();
  check("the refused call appears in the live log");

  // A tool error (isError: true): a file outside the roots.
  await page.fill("#tool-filter", "files_read");
  const read = page.locator('details.tool[data-tool="files_read"]');
  await read.locator("summary").click();
  await read.locator('[data-field="path"] input, [data-field="path"] textarea').fill("../outside.txt");
  await read.locator("button[type=submit]").click();
  await read.locator(".result.is-error").waitFor();
  check("a tool error shown as an error (isError)");
  await page.locator('#log tr.call[data-tool="files_read"][data-outcome="failed"]').waitFor();

  // A successful read: its text content block.
  await read.locator('[data-field="path"] input, [data-field="path"] textarea').fill(expect.readable || "docs/guide.md");
  await read.locator("button[type=submit]").click();
  await read.locator(".result.is-ok pre.text").waitFor();
  check("files_read result shown as a text block");

  // The charts pick the calls up from /metrics.
  await page.locator('#charts ul.bars li[data-tool="testkit_echo"]').waitFor();
  await page.locator("#charts svg.scatter circle").first().waitFor({ state: "attached" });
  check("charts show the calls");

  // Reload a plugin.
  const testkit = page.locator('#plugins tr[data-plugin="testkit"]');
  await testkit.locator("button", { hasText: "Reload" }).click();
  await page.locator('#plugins tr[data-plugin="testkit"][data-state="ready"]').waitFor();
  check("testkit reloaded");

  // Consensus: one question to every provider, each answering after its own delay: the
  // answers must land one at a time in that order, then the synthesis and who agreed.
  const c = expect.consensus;
  if (c) {
    const panel = page.locator("#consensus");
    await panel.locator("form.consensus").waitFor();
    await page.evaluate(() => {
      window.consensusArrivals = [];
      new MutationObserver((records) => {
        for (const r of records) {
          for (const n of r.addedNodes) window.consensusArrivals.push({ text: n.textContent, at: performance.now() });
        }
      }).observe(document.querySelector("#consensus .answers"), { childList: true });
    });
    await page.fill("#consensus-prompt", c.prompt);
    await panel.locator("button[type=submit]").click();
    const synthesis = panel.locator(".synthesis");
    await synthesis.waitFor();
    const arrivals = await page.evaluate(() => window.consensusArrivals);
    const seen = arrivals.map((a) => a.text.split("\n")[0]).join(" | ");
    if (arrivals.length !== c.order.length + 1) fail(`the consensus answers were: ${seen}`);
    c.order.forEach(({ provider, says }, i) => {
      const a = arrivals[i];
      if (!a.text.startsWith(`── ${provider} (`) || !a.text.includes(says)) {
        fail(`answer ${i + 1} should be ${provider}'s (${JSON.stringify(says)}), not ${JSON.stringify(a.text)}: ${seen}`);
      }
      const gap = i ? a.at - arrivals[i - 1].at : Infinity;
      if (gap < c.apart_ms) fail(`${provider}'s answer came ${Math.round(gap)} ms after the one before, not ${c.apart_ms}: ${seen}`);
    });
    if (!arrivals.at(-1).text.startsWith("── synthesis by ")) fail(`the last answer is not the synthesis: ${seen}`);
    check(`consensus answers appeared one at a time: ${c.order.map((o) => o.provider).join(", ")}`);
    const heading = await synthesis.locator("h3").innerText();
    if (heading !== c.synthesis.heading) fail(`the synthesis is headed ${JSON.stringify(heading)}`);
    const written = (await synthesis.locator("pre.answer").innerText()).trim();
    if (written !== c.synthesis.text) fail(`the synthesis reads ${JSON.stringify(written)}`);
    const line = await synthesis.locator("p.sub").innerText();
    const n = c.order.length;
    if (!line.includes(`${n} of ${n} answered`) || !line.includes(c.synthesis.agreed)) fail(`the synthesis says ${JSON.stringify(line)}`);
    const rows = await synthesis.locator("tbody tr").allInnerTexts();
    if (rows.length !== n || !rows.every((r) => r.includes("answered"))) fail(`the opinions table: ${JSON.stringify(rows)}`);
    const done = await page.locator("#consensus-status").innerText();
    if (!done.startsWith("Done in")) fail(`the consensus status reads ${JSON.stringify(done)}`);
    check(`synthesis shown with who agreed: ${line}`);
    await panel.scrollIntoViewIfNeeded();
    await panel.screenshot({ path: join(out, "consensus.png") });
  }

  // The providers panel, refreshed when the consensus finished: each provider's requests,
  // tokens and cost (read here, checked by the caller against GET /api/v1/providers).
  if (expect.providers) {
    await page.waitForFunction(
      (want) =>
        Object.entries(want).every(([name, requests]) => {
          const cell = document.querySelector(`#providers tr[data-provider="${name}"] td[data-label="Requests"]`);
          return cell?.textContent === String(requests);
        }),
      expect.providers,
    );
    for (const name of Object.keys(expect.providers)) {
      const row = page.locator(`#providers tr[data-provider="${name}"]`);
      if (!(await row.locator(".badge.ok").isVisible())) fail(`${name} is not shown as available`);
      const cell = (label) => row.locator(`td[data-label="${label}"]`).innerText();
      shown[name] = { requests: await cell("Requests"), tokens: await cell("Tokens in / out"), cost: await cell("Cost") };
    }
    shownTotal = await page.locator("#providers .body > p.sub").innerText();
    check(`providers panel: ${Object.entries(shown).map(([n, s]) => `${n} ${s.requests} requests, ${s.tokens} tokens, ${s.cost}`).join("; ")}`);
  }

  // Keyboard: the filter box is reachable and focus is visible.
  await page.fill("#tool-filter", "");
  await page.focus("#tool-filter");
  const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
  if (outline === "none") fail("no visible focus on the filter box");
  check("visible keyboard focus");

  await page.waitForTimeout(300);
  await page.screenshot({ path: join(out, "laptop.png"), fullPage: false });
  await page.screenshot({ path: join(out, "laptop-full.png"), fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(200);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 2) fail(`the phone layout scrolls sideways by ${overflow}px`);
  await page.screenshot({ path: join(out, "phone.png"), fullPage: false });
  await page.screenshot({ path: join(out, "phone-full.png"), fullPage: true });
  check("phone layout fits the width");
  await page.emulateMedia({ colorScheme: "dark" });
  await page.setViewportSize({ width: 1366, height: 900 });
  await page.screenshot({ path: join(out, "laptop-dark.png"), fullPage: false });

  // Forget the token: the page asks again, nothing is stored.
  await page.click("#forget");
  await dialog.waitFor({ state: "visible" });
  const after = await page.evaluate(() => sessionStorage.getItem("plugboard.token"));
  if (after !== null) fail("the token is still stored after 'forget'");
  check("forget token");

  const leaked = requested.filter((u) => u.includes(token) || decodeURIComponent(u).includes(token));
  if (leaked.length) fail(`the token appeared in a URL: ${leaked.length} requests`);
  check(`the token is in none of the ${requested.length} requested URLs`);
  if (problems.length) fail(`the page reported errors:\n${problems.join("\n")}`);
  check("no console errors, page errors or CSP violations");
  summary = { ok: true, checks, requests: requested.length, screenshots: out, providers: shown, providers_total: shownTotal };
} catch (err) {
  for (const p of browser.contexts().flatMap((c) => c.pages())) {
    await p.screenshot({ path: join(out, "failure.png"), fullPage: true }).catch(() => {});
  }
  summary = { ok: false, error: String(err.message || err), checks, problems };
} finally {
  await browser.close();
}
console.log(JSON.stringify(summary));
process.exit(summary.ok ? 0 : 1);
