// Starts the local gateway binary (on its default store, SQLite, in a new data directory) and
// Debian's Chromium for the viewer tests.

import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer } from 'node:http';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const binDir = process.env.AUDITLINE_BIN_DIR || join(root, 'target', 'debug');
export const docsDir = join(root, 'docs');

/// The gateway on a free loopback port; resolves once it printed its URL and credentials.
export function startGateway(env = {}) {
  const dataDir = mkdtempSync(join(tmpdir(), 'auditline-viewer-'));
  const child = spawn(join(binDir, 'auditline-local'), ['--port', '0', '--data-dir', dataDir], {
    env: { ...process.env, RUST_LOG: 'warn', AUDITLINE_SEAL_EVERY: '1s', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stderr.on('data', (d) => { err += d; });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the gateway did not start: ${out}${err}`)), 20000);
    child.on('exit', (code) => reject(new Error(`the gateway exited (${code}): ${err}`)));
    child.stdout.on('data', (d) => {
      out += d;
      const url = out.match(/HTTP API\s+(http:\/\/\S+)\/audit\/logs/);
      const key = out.match(/^  api key\s+(\S+)$/m);
      const token = out.match(/^  token\s+(ey\S+)$/m);
      // The seal key's fingerprint as the operator publishes it (here: the gateway's own output).
      const sealKey = out.match(/^  seal key\s+([0-9a-f]{32})\b/m);
      // With a JWT key of its own (JWT_SECRET), the gateway mints no development token.
      if (url && key && (token || env.JWT_SECRET) && sealKey) {
        clearTimeout(timer);
        resolve({
          url: url[1],
          key: key[1],
          token: token ? token[1] : null,
          sealKeyId: sealKey[1],
          stop: () => child.kill('SIGTERM'),
          async post(body) {
            const response = await fetch(`${url[1]}/audit/logs`, {
              method: 'POST',
              headers: { 'x-api-key': key[1], 'content-type': 'application/json' },
              body: JSON.stringify(body),
            });
            if (response.status !== 201) throw new Error(`POST answered ${response.status}: ${await response.text()}`);
            return response.json();
          },
        });
      }
    });
  });
}

/// Headless Chromium as the toolchain notes say it must run here (no background networking).
export function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
}

/// A page of another origin: a tiny server on its own loopback port serving `html`.
export function otherOrigin(html) {
  const server = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(html);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => {
    resolve({ origin: `http://127.0.0.1:${server.address().port}`, close: () => server.close() });
  }));
}

/// Signs in with the gateway's API key through the form, as a user would.
export async function signIn(page, gateway) {
  await page.goto(`${gateway.url}/`);
  await page.selectOption('#credential-kind', 'api_key');
  await page.fill('#credential', gateway.key);
  await page.click('.signin button[type=submit]');
  await page.waitForSelector('table.entries');
}
