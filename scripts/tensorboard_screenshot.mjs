// Takes the training guide's TensorBoard screenshot (docs/training.md): starts `tensorboard --logdir
// LOGDIR` on loopback, opens its Time Series page in headless Chromium
// (puppeteer-core from web/node_modules, Debian's /usr/bin/chromium), waits
// until the charts have drawn, and writes OUT.png. Stops TensorBoard after.
// usage: node scripts/tensorboard_screenshot.mjs TENSORBOARD_BIN LOGDIR OUT.png [FILTER]
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const [tensorboard, logdir, out, filter = 'epoch_'] = process.argv.slice(2);
if (!tensorboard || !logdir || !out) {
  console.error('usage: node scripts/tensorboard_screenshot.mjs TENSORBOARD_BIN LOGDIR OUT.png [FILTER]');
  process.exit(2);
}
const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, '..', 'web', 'package.json'));
const puppeteer = require('puppeteer-core');

const port = 6000 + (process.pid % 1000);
const tb = spawn(tensorboard, ['--logdir', logdir, '--host', '127.0.0.1', '--port', String(port)], {
  stdio: ['ignore', 'ignore', 'pipe'],
});
let tbLog = '';
tb.stderr.on('data', (d) => { tbLog += d; });
const stop = () => { try { tb.kill('SIGTERM'); } catch { /* gone */ } };
const watchdog = setTimeout(() => { console.error('screenshot: not done after 120 s\n' + tbLog); stop(); process.exit(1); }, 120000);

try {
  const url = `http://127.0.0.1:${port}/?darkMode=false#timeseries`;
  for (let i = 0; ; i++) {
    try { if ((await fetch(`http://127.0.0.1:${port}/data/runs`)).ok) break; } catch { /* not up yet */ }
    if (i > 200) throw new Error('tensorboard did not start:\n' + tbLog);
    await new Promise((r) => setTimeout(r, 250));
  }
  const browser = await puppeteer.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  const page = await browser.newPage();
  // Raw per-epoch values (no smoothing), settings pane closed: TensorBoard's stored settings.
  await page.evaluateOnNewDocument(() => {
    localStorage.setItem('_tb_global_settings', JSON.stringify({ scalarSmoothing: 0, timeSeriesSettingsPaneOpened: false }));
  });
  await page.setViewport({ width: 1400, height: 1000 });
  await page.goto(url, { waitUntil: 'networkidle0' });
  // Only the tags FILTER matches (a regex), in TensorBoard's tag filter box.
  const box = await page.waitForSelector('input[placeholder*="Filter tags"]', { timeout: 30000 });
  await box.type(filter);
  await page.keyboard.press('Escape'); // the tag suggestions
  const close = await page.$('button[aria-label="Close side pane"]');
  if (close) await close.click(); // the settings pane
  await page.waitForSelector('canvas, svg.line-chart, line-chart', { timeout: 30000 });
  await new Promise((r) => setTimeout(r, 4000)); // charts animate in
  await page.screenshot({ path: out });
  await browser.close();
  console.log(`screenshot: ${out}`);
} catch (e) {
  console.error(`screenshot: ${e.message}`);
  process.exitCode = 1;
} finally {
  clearTimeout(watchdog);
  stop();
}
