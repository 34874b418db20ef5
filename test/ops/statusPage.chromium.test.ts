/**
 * The status page rendered by a real browser: Debian's headless Chromium loads / from the ops
 * server on 127.0.0.1, runs the page's inline JS (which fetches api/summary), and dumps the DOM.
 * Needs /usr/bin/chromium (CI: `apt-get install -y chromium`); the test fails, it does not skip.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Ops } from '../../src/ops/index.js';
import { Logger } from '../../src/ops/log.js';
import type { ShardSnapshot } from '../../src/ops/metrics.js';

const CHROMIUM = process.env.TLSDECRYPT_CHROMIUM ?? '/usr/bin/chromium';
const MB = 1024 * 1024;
const GiB = 1024 * MB;

function snap(p: Partial<ShardSnapshot> = {}): ShardSnapshot {
  return { packets: 0, bytes: 0, tcpPackets: 0, flows: 0, tlsFlows: 0, otherFlows: 0, decryptedBytes: 0, sessionsByStatus: {}, eventsByDataset: {}, anomalies: {}, notDecoded: {}, ...p };
}

export function chromium(args: string[], timeoutMs = 90_000): Promise<{ stdout: string; stderr: string }> {
  const profile = mkdtempSync(join(tmpdir(), 'tlsdecrypt-chromium-'));
  const base = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage', `--user-data-dir=${profile}`];
  return new Promise((resolve, reject) => {
    execFile(CHROMIUM, [...base, ...args], { timeout: timeoutMs, maxBuffer: 64 * MB }, (err, stdout, stderr) => {
      rmSync(profile, { recursive: true, force: true });
      if (err) reject(new Error(`chromium failed: ${err.message}\n${stderr.slice(-2000)}`));
      else resolve({ stdout, stderr });
    });
  });
}

describe('status page in headless Chromium', () => {
  let ops: Ops;
  let url: string;

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(`${CHROMIUM} not found: the status-page test needs Debian's Chromium. Install it with 'apt-get install -y chromium' (or set TLSDECRYPT_CHROMIUM to a Chromium binary).`);
    }
    const clock = { t: Date.UTC(2026, 10, 22, 1, 0, 0) };
    const res = { cpu: 0, rss: 100 * MB };
    ops = new Ops({
      metricsPort: 0,
      now: () => clock.t,
      readings: { cpuMicros: () => res.cpu, rssBytes: () => res.rss },
      log: new Logger({ write: () => {} }),
      maxMemoryMb: 500,
      agentAbnormalAfterSec: 600,
      assets: [
        { name: 'intranet-web', server: '10.0.0.0/8', port: 443 },
        { name: 'payroll', server: '192.0.2.10', enabled: false },
        { name: 'mail <b>x</b>', server: '198.51.100.25' },
      ],
    });
    const addr = (await ops.start())!;
    url = `http://127.0.0.1:${addr.port}/`;
    // 30 minutes of traffic, a report every 10 s: the decrypted volume grows to 5 GiB.
    let decrypted = 0;
    for (let i = 1; i <= 180; i++) {
      clock.t += 10_000;
      decrypted = Math.round((5 * GiB * i) / 180);
      ops.shardReport(0, snap({ packets: i * 1000, bytes: i * 40 * MB, decryptedBytes: decrypted, sessionsByStatus: { decrypted: 4000 + i, no_key: 321, integrity_failure: 17 }, eventsByDataset: { 'tls.session': 4338 + i, http: 9000 }, activeFlows: 77 }));
      ops.tick();
    }
    ops.shardReport(0, { stats: snap({ packets: 180_000, bytes: 180 * 40 * MB, decryptedBytes: decrypted, sessionsByStatus: { decrypted: 4180, no_key: 321, integrity_failure: 17 }, eventsByDataset: { 'tls.session': 4518, http: 9000 }, activeFlows: 77 }), observations: [
      { serverIp: '10.1.1.1', serverPort: 443, byStatus: { decrypted: 4180 }, decryptedBytes: decrypted },
      { serverIp: '198.51.100.25', serverPort: 465, byStatus: { no_key: 3 }, decryptedBytes: 0 },
    ] });
    clock.t += 11 * 60_000; // the mail server has had TLS without secrets for 11 minutes
    ops.setKafka({ connected: true, lag: 12345 });
    ops.setWorkers(2, 2);
    res.rss = 612 * MB;
    ops.governor!.sample(); // over the memory budget: paused
    ops.tick();
  }, 60_000);

  afterAll(async () => {
    await ops?.stop();
  });

  it('renders the figures fed in (after the page JS fetched api/summary)', async () => {
    const { stdout: dom } = await chromium(['--virtual-time-budget=5000', '--dump-dom', url]);
    const text = dom.replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ');
    // Headline figures, formatted by the page's JS (not present in the HTML the server sent).
    expect(dom).toMatch(/<div class="big" id="decrypted-volume">5\.00 GiB<\/div>/);
    expect(dom).toContain('5,368,709,120 bytes of plaintext');
    // Paused: no asset counts as decrypting; 3 configured + 1 discovered (198.51.100.25:465 matches 'mail').
    expect(dom).toMatch(/id="assets-decrypting">0</);
    expect(dom).toContain('of 3 assets seen or configured');
    expect(dom).toMatch(/id="kafka-lag">12,345</);
    expect(dom).toMatch(/id="state-badge" class="badge paused">PAUSED</);
    expect(dom).toMatch(/id="paused-state"[^>]*>Paused</);
    expect(text).toContain('memory 612 MB RSS exceeds the 500 MB budget');
    // Outcomes by status.
    expect(dom).toMatch(/<tr data-status="decrypted"><td class="st-decrypted">decrypted<\/td><td class="num">4,180<\/td>/);
    expect(dom).toMatch(/<tr data-status="no_key"><td class="st-no_key">no_key<\/td><td class="num">321<\/td>/);
    expect(dom).toMatch(/<tr data-status="integrity_failure">.*?<td class="num">17<\/td>/);
    expect(dom).toMatch(/<tr data-status="decrypted">.*?<div class="bar" style="width: 100%;">/); // CSSOM styling is allowed by the CSP
    expect(dom).toMatch(/<tr data-status="no_key">.*?<div class="bar" style="width: 8%;">/);
    // Assets with status labels and reasons; names are text, not markup.
    expect(text).toContain('intranet-web Automatically disabled');
    expect(text).toContain('payroll Disabled');
    expect(dom).toContain('mail &lt;b&gt;x&lt;/b&gt;');
    expect(dom).not.toContain('<b>x</b>');
    // Trend chart: one bar per 10 s interval with data, summing to the decrypted volume.
    const svg = /<svg id="trend"[^>]*data-points="(\d+)" data-total="(\d+)"/.exec(dom);
    expect(svg, 'trend chart rendered').not.toBeNull();
    expect(Number(svg![1])).toBeGreaterThanOrEqual(180);
    expect(Number(svg![2])).toBe(5 * GiB);
    expect((dom.match(/<rect class="b"/g) ?? []).length).toBe(Number(svg![1]));
    expect(text).toContain('5.00 GiB decrypted in the period shown');
    expect(dom).toContain('<div id="error" class="wide"></div>');
  }, 120_000);

  it('renders to pixels (PNG screenshot; kept at $TLSDECRYPT_STATUS_SCREENSHOT when set)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tlsdecrypt-shot-'));
    const file = process.env.TLSDECRYPT_STATUS_SCREENSHOT ?? join(dir, 'status.png');
    try {
      await chromium(['--virtual-time-budget=5000', '--hide-scrollbars', '--window-size=1280,1400', `--screenshot=${file}`, url]);
      const png = readFileSync(file);
      expect(png.subarray(0, 8).toString('hex')).toBe('89504e470d0a1a0a');
      expect(png.readUInt32BE(16)).toBe(1280); // IHDR width
      expect(png.length).toBeGreaterThan(20_000); // not a blank page
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
