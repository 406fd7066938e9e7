// The local dashboard in Debian's chromium, driven by Playwright. scripts/browser-test.sh runs
// `pulse demo --json` on a fresh data dir, then `pulse up` on the same dir, and points this file
// at the dashboard (PULSE_DASHBOARD_URL) and the demo's report (PULSE_DEMO_REPORT).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { chromium } from 'playwright-core';

const url = process.env.PULSE_DASHBOARD_URL;
const report = JSON.parse(readFileSync(process.env.PULSE_DEMO_REPORT, 'utf8'));
const screenshot = process.env.PULSE_SCREENSHOT;
// How long the stack may take to store newly published events.
const SETTLE_MS = 60_000;

let browser;
let page;
const problems = [];

before(async () => {
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
    ],
  });
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console: ${message.text()}`);
  });
  page.on('pageerror', (error) => problems.push(`page: ${error.message}`));
  page.on('requestfailed', (request) =>
    problems.push(`request: ${request.url()} ${request.failure()?.errorText}`),
  );
});

after(async () => {
  await browser?.close();
});

const sum = (counts) => Object.values(counts).reduce((a, b) => a + b, 0);
const text = async (selector) => (await page.locator(selector).textContent()).trim();

test('the page loads without console errors', async () => {
  const response = await page.goto(url);
  assert.equal(response.status(), 200);
  assert.equal(await page.title(), 'Pulse — local dashboard');
  assert.equal(await page.locator('h1').count(), 1);
  assert.deepEqual(problems, []);
});

test('it shows the counts the demo reported', async () => {
  assert.ok(Object.keys(report.rows_written).length > 0, 'the demo wrote rows');
  for (const [table, rows] of Object.entries(report.rows_written)) {
    assert.equal(await text(`#rows-per-table tr[data-table="${table}"] td`), String(rows), table);
  }
  assert.equal(await text('#rows-total'), String(sum(report.rows_written)));
  assert.ok(Object.keys(report.dead_lettered).length > 0, 'the demo dead-lettered something');
  for (const [reason, n] of Object.entries(report.dead_lettered)) {
    assert.equal(await text(`#dead-letters-by-reason tr[data-reason="${reason}"] td`), String(n));
  }
  assert.equal(await text('#dead-letters-total'), String(sum(report.dead_lettered)));
});

test('the charts are drawn, named and state their numbers', async () => {
  const chart = page.locator('svg#orders-chart');
  assert.equal(await chart.getAttribute('role'), 'img');
  assert.equal(await chart.getAttribute('aria-labelledby'), 'orders-chart-title orders-chart-desc');
  const box = await chart.boundingBox();
  assert.ok(box.width > 200 && box.height > 100, JSON.stringify(box));
  // A background and at least one bar.
  assert.ok((await chart.locator('rect').count()) >= 2);
  assert.equal(await text('#orders-chart-title'), 'Orders per hour');
  // "orders: 14:00: 3, 15:00: 1": the bars add up to the orders the demo stored.
  const desc = await text('#orders-chart-desc');
  const bars = [...desc.matchAll(/: (\d+(?:\.\d+)?)(?:,|$)/g)].map((m) => Number(m[1]));
  assert.equal(bars.reduce((a, b) => a + b, 0), report.rows_written.orders, desc);
  for (const id of ['revenue-chart', 'inventory-chart', 'funnel-chart', 'devices-chart', 'rows-chart']) {
    assert.equal(await page.locator(`svg#${id}`).getAttribute('role'), 'img', id);
  }
});

test('the replay button re-drives a dead letter through preprocess, from the keyboard', async () => {
  const [reason] = Object.keys(report.dead_lettered);
  const button = page.getByRole('button', { name: new RegExp(`^Replay .*/${reason}/`) }).first();
  await button.focus();
  await Promise.all([page.waitForURL('**/dead-letters/replay'), page.keyboard.press('Enter')]);
  const status = await text('#replay-status');
  // A malformed message stays malformed: preprocess validated it again and kept it once.
  assert.match(status, new RegExp(`through preprocess /replay: 0 accepted, 0 already archived, dead-lettered again: ${reason} 1`), status);
  assert.equal(await text('#dead-letters-total'), String(sum(report.dead_lettered)));
  assert.deepEqual(problems, []);
});

test('events published now show up in the health charts and freshness', async () => {
  const before = Number(await text('#rows-total'));
  const sent = 20;
  const now = new Date().toISOString();
  const messages = Array.from({ length: sent }, (_, i) => ({
    data: Buffer.from(JSON.stringify({
      event_id: `browser-${randomUUID()}`, event_type: 'order', timestamp: now,
      order_id: `o-${i}`, customer_id: `c-${i % 4}`, status: 'paid', total_amount: 10 + i,
      items: [{ product_id: `p-${i % 3}`, quantity: 1, price: 10 + i }],
    })).toString('base64'),
  }));
  const response = await fetch(new URL('v1/projects/local/topics/events-raw:publish', url), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ messages }),
  });
  assert.equal(response.status, 200, await response.text());
  const deadline = Date.now() + SETTLE_MS;
  let rows = before;
  // Waits for the rows (and for a scrape of the metrics after them), then looks.
  while (Date.now() < deadline) {
    await page.goto(url);
    rows = Number(await text('#rows-total'));
    if (rows === before + sent && (await text('#freshness-p99')) !== '—') break;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  assert.equal(rows, before + sent);
  assert.match(await text('#freshness-p99'), /^\d+\.\d{3} s$/);
  assert.match(await text('#deliveries-chart-desc'), /preprocess: now/);
  assert.deepEqual(problems, []);
  if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
});
