// The viewer and the relay's malware scan, end to end: a real relay with a deny list flags a
// file; headless Chromium lists it with a warning and offers no preview or download, while the
// clean file next to it opens. The page's responses carry nosniff and a CSP, and an HTML file
// is shown as text, never run. Run by scripts/test-all after scripts/build-viewer.
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const bin = (name) => path.join(root, 'target/debug', name);
const work = mkdtempSync(path.join(tmpdir(), 'cloud3-flagged-'));
const artifacts = path.join(root, 'target/browser');
mkdirSync(artifacts, { recursive: true });
const relayData = path.join(work, 'relay');
const flaggedBytes = Buffer.from('an invoice the operator listed as bad\n');
const html = '<!doctype html><p>hi</p><script>window.ranFromFile = true;</script>\n';

function run(name, args) {
  return execFileSync(bin(name), args, { encoding: 'utf8', env: { ...process.env, RUST_LOG: 'warn' } });
}

const lastLine = (text) => text.trim().split('\n').pop().trim();
const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');
const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

function write(dir, relative, bytes) {
  const full = path.join(dir, relative);
  mkdirSync(path.dirname(full), { recursive: true });
  writeFileSync(full, bytes);
}

function startRelay(denyList) {
  const relay = spawn(bin('cloud3-relay'), [
    'serve', '--listen', '127.0.0.1:0', '--data', relayData, '--viewer', path.join(root, 'viewer'),
    '--deny-list', denyList,
  ], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'warn' } });
  return new Promise((resolve, reject) => {
    let buffer = '';
    relay.stdout.on('data', (chunk) => {
      buffer += chunk;
      const match = buffer.match(/listening on (\S+)/);
      if (match) resolve({ relay, addr: match[1] });
    });
    relay.on('exit', (code) => reject(new Error(`relay exited with ${code}`)));
  });
}

const denyList = path.join(work, 'deny.txt');
writeFileSync(denyList, `${sha256(flaggedBytes)} Test.Listed.Invoice\n`);
const { relay, addr } = await startRelay(denyList);
let browser;
try {
  // The page and its script come with nosniff and a CSP that allows no inline script.
  const response = await fetch(`http://${addr}/`);
  assert.equal(response.headers.get('x-content-type-options'), 'nosniff');
  const csp = response.headers.get('content-security-policy') || '';
  assert.match(csp, /script-src 'self' 'wasm-unsafe-eval'/);
  assert.doesNotMatch(csp, /unsafe-inline/);
  const script = await fetch(`http://${addr}/viewer.js`);
  assert.equal(script.headers.get('x-content-type-options'), 'nosniff');

  const invite = lastLine(run('cloud3-relay', ['user', 'add', 'alice', '--data', relayData]));
  const folder = path.join(work, 'laptop');
  run('cloud3', ['init', folder, '--relay', `ws://${addr}`, '--user', 'alice', '--invite', invite, '--device-name', 'laptop']);
  write(folder, 'invoice.txt', flaggedBytes);
  write(folder, 'clean.txt', 'nothing wrong here\n');
  write(folder, 'page.html', html);
  run('cloud3', ['sync', '--dir', folder]);
  for (let tries = 0; !run('cloud3-relay', ['scan', 'list', '--data', relayData]).includes('Test.Listed.Invoice'); tries += 1) {
    assert.ok(tries < 300, 'the relay flags the listed file');
    await sleep(100);
  }
  const code = lastLine(run('cloud3', ['pair', '--read-only', '--dir', folder]));

  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = await browser.newPage({ acceptDownloads: true });
  const pageErrors = [];
  page.on('pageerror', (error) => pageErrors.push(error.message));
  await page.goto(`http://${addr}/`);
  await page.fill('#user', 'alice');
  await page.fill('#code', code);
  await page.fill('#device-name', 'test browser');
  await page.click('button[type=submit]');
  await page.waitForFunction(() => document.getElementById('status').textContent.includes('read-only'), null, { timeout: 15000 });

  // The flagged file is listed, with a warning naming the verdict.
  const row = (p) => page.locator(`.entry[data-path="${p}"]`);
  await page.waitForSelector('.entry.flagged .warning', { timeout: 15000 });
  const warning = await row('invoice.txt').locator('.warning').textContent();
  assert.match(warning, /Flagged \{ engine: deny-list, signature: Test\.Listed\.Invoice \}/);
  assert.equal(await row('clean.txt').locator('.warning').count(), 0, 'the clean file has no warning');

  // Opening it offers neither preview nor download.
  await row('invoice.txt').click();
  await page.waitForFunction(() => document.getElementById('preview').textContent.includes('Not available'), null, { timeout: 15000 });
  assert.equal(await page.isHidden('#download'), true, 'no download link for a flagged file');
  assert.equal(await page.locator('#preview pre').count(), 0, 'no preview of a flagged file');

  // The engine refuses it too, whatever the page does.
  const refused = await page.evaluate(() => {
    const entry = window.cloud3.state.tree.find((e) => e.path === 'invoice.txt');
    try {
      window.cloud3.state.viewer.open(entry.id, -1);
      return 'opened';
    } catch (error) {
      return error.message;
    }
  });
  assert.match(refused, /flagged/);

  // The clean file next to it opens and downloads.
  await row('clean.txt').click();
  await page.waitForSelector('#preview pre', { timeout: 15000 });
  assert.equal(await page.textContent('#preview pre'), 'nothing wrong here\n');
  assert.equal(await page.isHidden('#download'), false);

  // An HTML file is shown as text and downloaded as bytes: its script never runs here.
  await row('page.html').click();
  await page.waitForFunction(() => document.getElementById('preview').dataset.type === 'text/plain', null, { timeout: 15000 });
  assert.equal(await page.textContent('#preview pre'), html);
  assert.equal(await page.evaluate(() => window.ranFromFile), undefined, 'the file\'s script did not run');
  // Even opened directly (not through the download attribute), the link is a download, never
  // a page of the relay's origin.
  const href = await page.getAttribute('#download', 'href');
  const downloads = [];
  // (Chromium hands the download to the opener and closes the tab it opened.)
  page.on('download', (d) => downloads.push(d));
  page.context().on('page', (popup) => popup.on('download', (d) => downloads.push(d)));
  await page.evaluate((url) => { window.open(url); }, href);
  for (let tries = 0; downloads.length === 0; tries += 1) {
    assert.ok(tries < 150, 'opening the download link downloads it');
    await sleep(100);
  }
  const saved = path.join(work, 'page-download.html');
  await downloads[0].saveAs(saved);
  assert.equal(readFileSync(saved, 'utf8'), html, 'the download holds the file\'s bytes');
  for (const other of page.context().pages()) {
    assert.equal(await other.evaluate(() => window.ranFromFile), undefined, 'nothing ran in any tab');
  }

  assert.deepEqual(pageErrors, [], 'no page errors (a CSP violation would be one)');
  await page.screenshot({ path: path.join(artifacts, 'flagged.png'), fullPage: true });
  console.log(`flagged-file viewer test passed; screenshot in ${path.join(artifacts, 'flagged.png')}`);
} finally {
  if (browser) await browser.close();
  relay.kill('SIGKILL');
  rmSync(work, { recursive: true, force: true });
}
