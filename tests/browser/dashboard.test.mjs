// Drives the spliced dashboard in Debian's headless Chromium (playwright-core,
// no downloaded browser) against a running spliced with live traffic.
//
//   node tests/browser/dashboard.test.mjs <admin-url> <screenshot-path>
//
// Optional environment (set by tests/e2e/dashboard.rs):
//   SPLICED_TEST_BACKENDS  comma-separated addresses the page must list
//                          (default: every backend the API lists)
//   SPLICED_TEST_DRAIN     the backend to drain from the page (default: the first)
//   SPLICED_TEST_WEIGHT    "address=weight" to set from the page (optional)
//   SPLICED_TEST_TOKEN     the admin token; when set, the test first checks that
//                          actions are locked without it and that a wrong token's
//                          error is shown, then saves it
//   SPLICED_TEST_HTTP_LISTENER  an HTTP listener with live traffic (2xx and 5xx):
//                          its row must show the request count and rate moving
//   SPLICED_TEST_EXPIRING  a certificate name that expires within 14 days: its
//                          row must be highlighted
//   SPLICED_TEST_NOT_EXPIRING  a certificate name with longer left: not highlighted
//
// Prints one "ok - ..." line per check and exits 0, or prints the failure and
// exits 1. Every wait is bounded (at most 30 s each).

import { chromium } from "playwright-core";

const [adminUrl, screenshotPath] = process.argv.slice(2);
if (!adminUrl || !screenshotPath) {
  console.error("usage: node dashboard.test.mjs <admin-url> <screenshot-path>");
  process.exit(2);
}
const base = adminUrl.endsWith("/") ? adminUrl : adminUrl + "/";
const WAIT = 30_000;
const started = Date.now();
const ok = (what) => console.log(`ok - ${what} (${((Date.now() - started) / 1000).toFixed(1)}s)`);
const cssString = (s) => JSON.stringify(s); // a quoted CSS attribute value

async function api() {
  const r = await fetch(base + "api/v1/pools", { signal: AbortSignal.timeout(10_000) });
  if (!r.ok) throw new Error(`GET api/v1/pools: ${r.status}`);
  return r.json();
}

// Last-resort bound, whatever hangs.
const guard = setTimeout(() => {
  console.error("dashboard test: overall time limit (120 s) reached");
  process.exit(1);
}, 120_000);

let browser;
let failed = false;
const problems = [];
try {
  browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--no-first-run", "--disable-sync"],
    timeout: WAIT,
  });
  const page = await browser.newPage({ viewport: { width: 1440, height: 1000 } });
  page.setDefaultTimeout(WAIT);
  page.on("pageerror", (e) => problems.push("page error: " + e.message));
  page.on("console", (m) => {
    // The browser logs every 4xx it receives; the wrong-token check causes one on purpose.
    if (m.type() === "error" && !/Failed to load resource/.test(m.text())) problems.push("console error: " + m.text());
  });
  const checkProblems = () => {
    if (problems.length) throw new Error(problems.join("\n"));
  };

  // 1. The page loads, is self-contained and goes live.
  const external = [];
  page.on("request", (r) => { if (!r.url().startsWith(base) && !r.url().startsWith("data:")) external.push(r.url()); });
  const resp = await page.goto(base, { waitUntil: "load", timeout: WAIT });
  if (!resp || resp.status() !== 200) throw new Error(`GET / answered ${resp && resp.status()}`);
  const ctype = resp.headers()["content-type"] || "";
  if (!ctype.startsWith("text/html")) throw new Error(`GET / content-type is ${ctype}`);
  await page.locator('[data-testid="live"]').filter({ hasText: /^live$/ }).waitFor();
  const data = await api();
  const version = await page.locator('[data-testid="version"]').textContent();
  if (!version.includes(data.version)) throw new Error(`header shows ${version}, API says ${data.version}`);
  ok(`page loads and polls the API (version ${data.version})`);

  // 2. Every backend is listed, with a state badge.
  const all = data.pools.flatMap((p) => p.backends.map((b) => ({ pool: p.name, ...b })));
  const expected = process.env.SPLICED_TEST_BACKENDS
    ? process.env.SPLICED_TEST_BACKENDS.split(",").filter(Boolean)
    : all.map((b) => b.address);
  if (!expected.length) throw new Error("no backends to look for");
  for (const addr of expected) {
    const row = page.locator(`[data-testid="backend-row"][data-address=${cssString(addr)}]`);
    await row.first().waitFor();
    const badge = (await row.first().locator('[data-testid="state-badge"]').textContent()).trim();
    const fromApi = all.find((b) => b.address === addr);
    if (!fromApi) throw new Error(`the API does not list ${addr}`);
    if (!["up", "down", "ejected", "draining", "disabled"].includes(badge)) throw new Error(`${addr}: badge ${badge}`);
  }
  for (const l of data.listeners) {
    await page.locator(`[data-testid="listener-row"][data-name=${cssString(l.name)}]`).waitFor();
  }
  // One folded "Rejected" column, however many rejection reasons exist.
  const columns = await page.locator("#listeners thead th").count();
  if (columns !== 6) throw new Error(`the listener table has ${columns} columns, want 6`);
  const rejected = (await page.locator('[data-testid="listener-rejected"]').first().locator("div").first().textContent()).trim();
  if (!/^[0-9][0-9,.\sk]*$/.test(rejected)) throw new Error(`rejected cell shows ${JSON.stringify(rejected)}`);
  ok(`lists ${expected.length} backends and ${data.listeners.length} listeners`);

  // 3. The connections chart changes while traffic flows.
  const drainAddr = process.env.SPLICED_TEST_DRAIN || expected[0];
  const drainPool = all.find((b) => b.address === drainAddr).pool;
  const pool = page.locator(`[data-testid="pool"][data-pool=${cssString(drainPool)}]`);
  const chart = pool.locator('[data-testid="conn-chart"]');
  const pixels = () => chart.evaluate((c) => c.toDataURL());
  const first = await pixels();
  await page.waitForFunction(
    ([el, before]) => Number(el.dataset.peak) > 0 && Number(el.dataset.samples) >= 2 && el.toDataURL() !== before,
    [await chart.elementHandle(), first], { timeout: WAIT });
  const second = await pixels();
  await page.waitForFunction(
    ([el, before]) => el.toDataURL() !== before && Number(el.dataset.latest) > 0,
    [await chart.elementHandle(), second], { timeout: WAIT });
  const peak = await chart.getAttribute("data-peak");
  ok(`connections chart draws live traffic (peak ${Number(peak).toFixed(1)}/s) and keeps changing`);
  for (const id of ["bytes-chart", "health-timeline", "share-chart"]) await pool.locator(`[data-testid="${id}"]`).waitFor();
  const shareSegs = await pool.locator('[data-testid="share-connections"] > div').count();
  if (shareSegs < 1) throw new Error("share of traffic shows nothing");
  const bars = await pool.locator('[data-testid="timeline-bar"] .tl-seg').count();
  if (bars < 1) throw new Error("health timeline shows nothing");
  ok(`throughput chart, health timeline (${bars} segments) and traffic share (${shareSegs} backends) shown`);

  // 3b. HTTP listeners: the request count and rate move; status classes and
  //     response time are shown. Certificates: days left, highlighted when few.
  const httpName = process.env.SPLICED_TEST_HTTP_LISTENER;
  if (httpName) {
    const hrow = page.locator(`[data-testid="http-row"][data-name=${cssString(httpName)}]`);
    await hrow.waitFor();
    const total0 = Number(await hrow.getAttribute("data-total"));
    await page.waitForFunction(
      ([el, before]) => Number(el.dataset.total) > before && Number(el.dataset.rps) > 0,
      [await hrow.elementHandle(), total0], { timeout: WAIT });
    const total1 = Number(await hrow.getAttribute("data-total"));
    const cell = async (id) => (await hrow.locator(`[data-testid="http-${id}"]`).textContent()).trim();
    const num = (t) => Number(t.replace(/[^0-9.]/g, ""));
    const [c2, c5, rps, p50, p99] = [await cell("2xx"), await cell("5xx"), await cell("rps"), await cell("p50"), await cell("p99")];
    if (!(num(c2) > 0)) throw new Error(`${httpName}: 2xx shows ${c2}`);
    if (!(num(c5) > 0)) throw new Error(`${httpName}: 5xx shows ${c5}`);
    if (!/\d/.test(rps) || !(num(rps) > 0)) throw new Error(`${httpName}: requests/s shows ${rps}`);
    for (const [what, t] of [["p50", p50], ["p99", p99]]) if (!/^[0-9.]+ m?s$/.test(t)) throw new Error(`${httpName}: ${what} shows ${JSON.stringify(t)}`);
    const chart = page.locator('[data-testid="http-chart"]');
    await page.waitForFunction((el) => Number(el.dataset.peak) > 0, await chart.elementHandle(), { timeout: WAIT });
    const mode = (await page.locator(`[data-testid="listener-row"][data-name=${cssString(httpName)}] [data-testid="listener-mode"]`).textContent()).trim();
    if (mode !== "http") throw new Error(`${httpName}: listener table says mode ${mode}`);
    ok(`HTTP listener ${httpName}: requests ${total0} → ${total1} (${rps}/s, 2xx ${c2}, 5xx ${c5}, p50 ${p50}, p99 ${p99})`);
  }
  const certRow = (name) => page.locator(`[data-testid="cert-row"][data-name=${cssString(name)}]`);
  if (process.env.SPLICED_TEST_EXPIRING) {
    const name = process.env.SPLICED_TEST_EXPIRING;
    await certRow(name).waitFor();
    const cls = (await certRow(name).getAttribute("class")) || "";
    const days = (await certRow(name).locator('[data-testid="cert-days"]').textContent()).trim();
    if (!/\bexpiring\b/.test(cls)) throw new Error(`certificate ${name} (${days} days) is not highlighted: class ${JSON.stringify(cls)}`);
    if (!(Number(days) < 14)) throw new Error(`certificate ${name}: days left shows ${days}`);
    ok(`certificate ${name} with ${days} days left is highlighted`);
  }
  if (process.env.SPLICED_TEST_NOT_EXPIRING) {
    const name = process.env.SPLICED_TEST_NOT_EXPIRING;
    await certRow(name).waitFor();
    const cls = (await certRow(name).getAttribute("class")) || "";
    if (/expir/.test(cls)) throw new Error(`certificate ${name} is highlighted: ${cls}`);
    ok(`certificate ${name} is listed, not highlighted`);
  }

  // 4. Actions: token handling, then drain (and optionally a weight) from the page.
  const row = pool.locator(`[data-testid="backend-row"][data-address=${cssString(drainAddr)}]`);
  const drainButton = row.locator('[data-testid="drain-button"]');
  const token = process.env.SPLICED_TEST_TOKEN;
  const saveToken = async (t) => {
    await page.locator('[data-testid="token-input"]').fill(t);
    await page.locator('[data-testid="token-save"]').click();
  };
  if (token) {
    if (!data.token_required) throw new Error("a token is configured but the API says token_required: false");
    if (!(await drainButton.isDisabled())) throw new Error("actions are enabled without a token");
    await saveToken(token + "-wrong");
    await drainButton.click();
    const err = page.locator('[data-testid="error-message"]').filter({ hasText: drainAddr });
    await err.first().waitFor();
    const text = (await err.first().textContent()).trim();
    if ((await row.locator('[data-testid="state-badge"]').textContent()).trim() === "draining") {
      throw new Error("a drain with a wrong token took effect");
    }
    ok(`actions locked without a token; a wrong token's error is shown: "${text.replace(/×$/, "")}"`);
    await page.locator('[data-testid="error-message"] button').first().click();
    await saveToken(token);
  }
  await drainButton.click();
  await row.locator('[data-testid="state-badge"]').filter({ hasText: /^draining$/ }).waitFor();
  await row.locator('[data-testid="drain-button"]').filter({ hasText: /^Undrain$/ }).waitFor();
  if (await page.locator('[data-testid="error-message"]').count()) {
    throw new Error("error shown after drain: " + (await page.locator('[data-testid="error-message"]').first().textContent()));
  }
  ok(`drain click on ${drainAddr} shows "draining"`);

  if (process.env.SPLICED_TEST_WEIGHT) {
    const [addr, w] = process.env.SPLICED_TEST_WEIGHT.split("=");
    const wrow = page.locator(`[data-testid="backend-row"][data-address=${cssString(addr)}]`).first();
    await wrow.locator('[data-testid="weight-input"]').fill(w);
    await wrow.locator('[data-testid="weight-button"]').click();
    await page.waitForFunction(
      ([el, want]) => el.dataset.weight === want,
      [await wrow.elementHandle(), w], { timeout: WAIT });
    ok(`weight of ${addr} set to ${w} from the page`);
  }

  // 5. A screenshot with some more traffic on the charts (the drained backend's
  //    line drops to zero).
  await page.waitForTimeout(8000);
  checkProblems();
  if (external.length) throw new Error("the page fetched outside the admin listener: " + external.join(", "));
  await page.screenshot({ path: screenshotPath, fullPage: true, timeout: WAIT });
  ok(`screenshot saved to ${screenshotPath}`);
} catch (e) {
  failed = true;
  console.error("not ok - " + (e && e.stack ? e.stack : e));
  if (problems.length) console.error(problems.join("\n"));
} finally {
  if (browser) await browser.close().catch(() => {});
  clearTimeout(guard);
}
process.exit(failed ? 1 : 0);
