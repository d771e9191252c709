// Screenshots of Dagster UI pages with a headless Chromium, driven by playwright-core.
// Called by bench/ui_screenshots.py: node bench/ui_screenshots.cjs BASE_URL OUT_DIR CHROMIUM PAGES_JSON
// (PAGES_JSON: {"file stem": "/ui/path" or {"path": "/ui/path", "click": "text", ...}, ...}: the
// first (with "last": the last) element showing that text is clicked before the screenshot, and with
// "canvas" the page waits for a chart; "wait": milliseconds to wait first, e.g. for sensor ticks). Needs playwright-core (no browser download):
// `npm install --prefix .usage_etl/node playwright-core`; the Python script sets NODE_PATH to it.
const { chromium } = require("playwright-core");
const path = require("node:path");

(async () => {

const [base, out, executablePath, pagesJson] = process.argv.slice(2);
const pages = JSON.parse(pagesJson);
const browser = await chromium.launch({
  executablePath,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"],
});
const context = await browser.newContext({ viewport: { width: 1600, height: 1200 } });
// The "Join the Dagster community" dialog covers every page of a UI served on 127.0.0.1 until it is
// dismissed once; the UI remembers that in localStorage under "communityNux".
await context.addInitScript(() => window.localStorage.setItem("communityNux", JSON.stringify("1")));
const page = await context.newPage();
let failed = 0;
for (const [stem, spec] of Object.entries(pages)) {
  const url = typeof spec === "string" ? spec : spec.path;
  const png = path.join(out, `${stem}.png`);
  try {
    // The UI keeps polling, so "networkidle" may never come: wait for it a while, then for rendering.
    if (spec.wait) await new Promise((resolve) => setTimeout(resolve, spec.wait));
    await page.goto(base + url, { waitUntil: "domcontentloaded", timeout: 60000 });
    await page.waitForLoadState("networkidle", { timeout: 20000 }).catch(() => {});
    if (spec.click) {  // e.g. the metadata section's "Plots" toggle, or a tick's result
      const matches = page.getByText(spec.click, { exact: true });
      const button = spec.last ? matches.last() : matches.first();
      await button.scrollIntoViewIfNeeded({ timeout: 20000 });
      await button.click();
      if (spec.canvas) {  // charts render after their data arrives
        await page.waitForSelector("canvas", { timeout: 20000 }).catch(() => {});
        await button.evaluate((el) => el.scrollIntoView({ block: "start" }));
      }
    }
    await page.waitForTimeout(3000);
    await page.screenshot({ path: png, fullPage: false });
    console.log(`${png}  <- ${url}`);
  } catch (err) {
    failed += 1;
    console.log(`${png}  <- ${url}  (failed: ${err.message.split("\n")[0]})`);
  }
}
await browser.close();
process.exit(failed ? 1 : 0);
})();
