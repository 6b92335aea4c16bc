// The dashboard's entry point: the login prompt, the panels, and what the live events
// refresh. `<html data-ready="1">` once the plugins and tools have rendered (the browser
// tests and the page-load benchmark wait for it).

import { onUnauthorized, setToken, token } from "./api.js";
import * as charts from "./charts.js";
import * as consensus from "./consensus.js";
import * as log from "./log.js";
import * as plugins from "./plugins.js";
import * as providers from "./providers.js";
import * as tools from "./tools.js";

const $ = (id) => document.getElementById(id);

/** The login dialog: resolves with the token typed in. */
function prompt(refused) {
  const dialog = $("login");
  const form = $("login-form");
  const input = $("login-token");
  $("login-error").hidden = !refused;
  input.value = "";
  return new Promise((resolve) => {
    const submit = (e) => {
      e.preventDefault();
      const value = input.value.trim();
      if (!value) return input.focus();
      form.removeEventListener("submit", submit);
      dialog.close();
      forget.hidden = false;
      resolve(value);
    };
    form.addEventListener("submit", submit);
    // Escape would leave the page with nothing to show: the prompt stays until answered.
    dialog.addEventListener("cancel", (e) => e.preventDefault(), { once: true });
    if (!dialog.open) dialog.showModal();
    input.focus();
  });
}

const forget = $("forget");
forget.hidden = !token();
forget.addEventListener("click", () => {
  setToken("");
  forget.hidden = true;
  // A fresh page asks again at the next call; nothing of the old session stays on screen.
  location.reload();
});
onUnauthorized(prompt);

const conn = $("conn");
function status(text, live) {
  conn.textContent = text;
  conn.classList.toggle("live", live);
}

const section = (id) => $(id);
async function refresh() {
  const [ps, ts] = await Promise.all([plugins.load(section("plugins"), soon), tools.load(section("tools"))]);
  consensus.render(section("consensus"), ts, ps);
}

// Several events in a burst (a reload: status, then list_changed) make one refresh.
let pending = null;
function soon() {
  clearTimeout(pending);
  pending = setTimeout(refresh, 150);
}

async function main() {
  // Everything asked for at once: the page is ready when the slowest answer has rendered.
  const listed = refresh();
  const chart = charts.start(section("charts"));
  const provs = providers.start(section("providers"));
  await listed;
  log.start(
    section("log"),
    {
      call_finished: (d) => {
        chart.finished(d);
        if (d.plugin === "agents") provs.reload();
      },
      plugin_status: soon,
      list_changed: (d) => d.list === "tools" && soon(),
      reconnected: soon,
    },
    status,
  );
  await Promise.allSettled([chart.scraped, provs.loaded]);
  document.documentElement.dataset.ready = "1";
}

main().catch((err) => {
  status(`error: ${err.message}`, false);
  document.documentElement.dataset.ready = "error";
});
