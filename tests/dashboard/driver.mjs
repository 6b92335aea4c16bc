// What both browser drivers (dashboard.mjs, firefox.mjs) start from: the server the Rust test
// started (DASHBOARD_URL), its token (DASHBOARD_TOKEN), what to expect (DASHBOARD_EXPECT, JSON),
// the folder for screenshots, and the list of checks passed.

import { mkdirSync } from "node:fs";
import { join } from "node:path";

export const url = process.env.DASHBOARD_URL;
export const token = process.env.DASHBOARD_TOKEN;
export const expect = JSON.parse(process.env.DASHBOARD_EXPECT || "{}");
export const out = join(process.env.PLUGBOARD_TEST_OUTPUT || "target/test-output", "dashboard");
export const TIMEOUT = 15000;

if (!url || !token) {
  console.error("set DASHBOARD_URL and DASHBOARD_TOKEN");
  process.exit(2);
}
mkdirSync(out, { recursive: true });

export const checks = [];
export const check = (what) => checks.push(what);
export const fail = (what) => {
  throw new Error(what);
};
