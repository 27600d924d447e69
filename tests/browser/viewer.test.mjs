// The browser viewer end to end: a real relay and a real agent sync a small tree; headless
// Chromium enrols with a read-only pairing code and checks what a person would see. Run by
// scripts/test-all after scripts/build-viewer; binaries from target/debug.
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const bin = (name) => path.join(root, 'target/debug', name);
const work = mkdtempSync(path.join(tmpdir(), 'cloud3-browser-'));
const artifacts = path.join(root, 'target/browser');
mkdirSync(artifacts, { recursive: true });
const PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==',
  'base64',
);

function run(name, args) {
  return execFileSync(bin(name), args, { encoding: 'utf8', env: { ...process.env, RUST_LOG: 'warn' } });
}

function lastLine(text) {
  return text.trim().split('\n').pop().trim();
}

function startRelay() {
  const relay = spawn(bin('cloud3-relay'), [
    'serve', '--listen', '127.0.0.1:0', '--data', path.join(work, 'relay'), '--viewer', path.join(root, 'viewer'),
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

function write(dir, relative, bytes) {
  const full = path.join(dir, relative);
  mkdirSync(path.dirname(full), { recursive: true });
  writeFileSync(full, bytes);
}

const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');

const { relay, addr } = await startRelay();
let browser;
try {
  const invite = lastLine(run('cloud3-relay', ['user', 'add', 'alice', '--data', path.join(work, 'relay')]));
  const folder = path.join(work, 'laptop');
  run('cloud3', ['init', folder, '--relay', `ws://${addr}`, '--user', 'alice', '--invite', invite, '--device-name', 'laptop']);
  const big = randomBytes(5 << 20);
  write(folder, 'docs/notes/readme.txt', 'hello from cloud3\n');
  write(folder, 'pictures/dot.png', PNG);
  write(folder, 'data/archive/blob.bin', big);
  run('cloud3', ['sync', '--dir', folder]);
  const code = lastLine(run('cloud3', ['pair', '--read-only', '--dir', folder]));

  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = await browser.newPage({ acceptDownloads: true });
  page.on('pageerror', (error) => console.error('page error:', error.message));
  await page.goto(`http://${addr}/`);

  // Enrol with the read-only code.
  await page.fill('#user', 'alice');
  await page.fill('#code', code);
  await page.fill('#device-name', 'test browser');
  await page.click('button[type=submit]');
  await page.waitForFunction(() => document.getElementById('status').textContent.includes('read-only'), null, { timeout: 15000 });

  // The tree, folders that open, the text file's content.
  const row = (p) => page.locator(`tr.entry[data-path="${p}"]`);
  await row('docs').click();
  await row('docs/notes').click();
  await row('docs/notes/readme.txt').click();
  await page.waitForSelector('#preview pre', { timeout: 15000 });
  assert.equal(await page.textContent('#preview pre'), 'hello from cloud3\n');

  // The image is displayed.
  await page.click('#breadcrumbs a:first-child');
  await row('pictures').click();
  await row('pictures/dot.png').click();
  await page.waitForFunction(() => {
    const img = document.querySelector('#preview img');
    return img && img.complete && img.naturalWidth === 1;
  }, null, { timeout: 15000 });

  // The 5 MiB binary downloads byte for byte.
  await page.click('#breadcrumbs a:first-child');
  await row('data').click();
  await row('data/archive').click();
  await row('data/archive/blob.bin').click();
  await page.waitForFunction(() => document.getElementById('preview').dataset.bytes === String(5 << 20), null, { timeout: 30000 });
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
  const saved = path.join(work, 'downloaded.bin');
  await download.saveAs(saved);
  assert.equal(sha256(readFileSync(saved)), sha256(big), 'downloaded bytes equal the original');

  // A change made by the agent appears without a reload.
  await page.click('#breadcrumbs a:first-child');
  await row('docs').click();
  write(folder, 'docs/fresh.txt', 'written after the page opened');
  run('cloud3', ['sync', '--dir', folder]);
  await row('docs/fresh.txt').waitFor({ timeout: 15000 });

  // A write from the browser's read-only device is refused by the relay.
  await page.evaluate(() => window.cloud3.tryWrite());
  await page.waitForFunction(() => document.getElementById('message').textContent.includes('read-only'), null, { timeout: 15000 });

  await page.screenshot({ path: path.join(artifacts, 'viewer.png'), fullPage: true });
  console.log(`browser viewer test passed; screenshot in ${path.join(artifacts, 'viewer.png')}`);
} finally {
  if (browser) await browser.close();
  relay.kill('SIGKILL');
  rmSync(work, { recursive: true, force: true });
}
