// The dashboard's page load, measured in headless chromium: each run in a fresh browser
// context (nothing cached), the token put in the tab's sessionStorage before the page runs
// (as after a login; never in a URL). Prints one JSON line:
//   {"runs", "requests", "bytes", "asset_bytes", "tti_ms_median", "tti_ms_min", "tti_ms"}
// `bytes`: what went over the wire until the page was ready (encoded sizes with headers, from
// the CDP Network events; the event stream counts what it had sent by then); `asset_bytes`:
// the decoded size of the page's own files; TTI: navigation start → `<html data-ready="1">`.
//
//   node tests/dashboard/measure.mjs URL [--runs N]     (token: DASHBOARD_TOKEN or
//                                                         PLUGBOARD_HTTP_TOKEN, if it has one)

import { chromium } from "playwright-core";

const args = process.argv.slice(2);
let url = "";
let runs = 10;
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--runs") runs = Number(args[++i]);
  else url = args[i];
}
const token = process.env.DASHBOARD_TOKEN || process.env.PLUGBOARD_HTTP_TOKEN || "";
if (!url || !(runs >= 1)) {
  console.error("usage: measure.mjs URL [--runs N]  (the token in DASHBOARD_TOKEN)");
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox"],
});

async function once() {
  const context = await browser.newContext({ viewport: { width: 1366, height: 900 } });
  if (token) {
    await context.addInitScript((t) => sessionStorage.setItem("plugboard.token", t), token);
  }
  // When the page says it is ready, relative to its navigation start.
  await context.addInitScript(() => {
    // (The root element may not exist yet when this runs: watch the whole document.)
    new MutationObserver((_, observer) => {
      if (document.documentElement?.dataset.ready === "1") {
        window.__readyAt = performance.now();
        observer.disconnect();
      }
    }).observe(document, { attributes: true, subtree: true, attributeFilter: ["data-ready"] });
  });
  const page = await context.newPage();
  const cdp = await context.newCDPSession(page);
  await cdp.send("Network.enable");
  const wire = new Map(); // requestId → bytes received (final size once it finished)
  const assets = new Map(); // requestId → decoded body size of the page's own files
  let requests = 0;
  let counting = true;
  cdp.on("Network.requestWillBeSent", () => counting && requests++);
  cdp.on("Network.dataReceived", (e) => {
    if (counting) wire.set(e.requestId, (wire.get(e.requestId) || 0) + e.encodedDataLength);
    if (counting && assets.has(e.requestId)) assets.set(e.requestId, assets.get(e.requestId) + e.dataLength);
  });
  cdp.on("Network.responseReceived", (e) => {
    if (/^\/(assets\/[\w.]+)?$/.test(new URL(e.response.url).pathname)) assets.set(e.requestId, 0);
  });
  cdp.on("Network.loadingFinished", (e) => counting && wire.set(e.requestId, e.encodedDataLength));
  await page.goto(url);
  await page.waitForFunction(() => window.__readyAt !== undefined, null, { timeout: 30000 });
  const tti = await page.evaluate(() => window.__readyAt);
  counting = false;
  const sum = (m) => [...m.values()].reduce((a, b) => a + b, 0);
  const asset = [...assets.entries()].filter(([id]) => wire.has(id));
  await context.close();
  return { tti, requests, bytes: sum(wire), assetBytes: asset.reduce((a, [, b]) => a + b, 0) };
}

const results = [];
try {
  for (let i = 0; i < runs; i++) results.push(await once());
} finally {
  await browser.close();
}
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const round = (x) => Math.round(x * 10) / 10;
console.log(
  JSON.stringify({
    url,
    runs,
    requests: median(results.map((r) => r.requests)),
    bytes: median(results.map((r) => r.bytes)),
    asset_bytes: median(results.map((r) => r.assetBytes)),
    tti_ms_median: round(median(results.map((r) => r.tti))),
    tti_ms_min: round(Math.min(...results.map((r) => r.tti))),
    tti_ms: results.map((r) => round(r.tti)),
  }),
);
