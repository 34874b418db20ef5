/**
 * The log view of the status page, in headless Chromium driven over the DevTools protocol, on
 * events that went through the real broker: fixtures published to a packets topic, `run` (in this
 * process, --metrics-port 0) decrypting them with keys from a secrets topic. The page's switch
 * "Show only Decryption Detection", its dataset / server / text filters and row expansion are used
 * as an operator would; what they show is compared with what `replay` gives for the same captures
 * (the reference) and with /api/events. Needs /usr/bin/chromium like statusPage.chromium.test.ts.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveRunConfig } from '../../src/kafka/config.js';
import { publishKeylog, publishPcap } from '../../src/kafka/publish.js';
import { startRun, type RunHandle } from '../../src/kafka/run.js';
import { brokers, client, ensureBuilt, REPO, uniq, until } from '../kafka/helpers.js';
import { Browser, CHROMIUM } from './cdp.js';
import { httpGet } from '../helpers/http.js';

type Ev = Record<string, any>;
const TAG = 'Decryption Detection';
// basic-auth: decrypted HTTP/1.1 with Basic credentials (http, alert, tls.session, all tagged);
// tls13-aes128gcm-h2: decrypted HTTP/2; ftp-clear-active: clear-text FTP (untagged);
// tls13-aes256gcm-http11 published without its key: one untagged tls.session (no_key).
const FIXTURES: { dir: string; key: boolean }[] = [
  { dir: 'fixtures/detect/basic-auth', key: true },
  { dir: 'fixtures/https/tls13-aes128gcm-h2', key: true },
  { dir: 'fixtures/ftp/ftp-clear-active', key: false },
  { dir: 'fixtures/https/tls13-aes256gcm-http11', key: false },
];
const PASSWORD = 'S3cr3t-Pw'; // fixtures/detect/basic-auth/meta.json: never in any event

function replayEvents(dir: string, key: boolean): Ev[] {
  const args = [`${REPO}/dist/src/cli.js`, 'replay', `${REPO}/${dir}/capture.pcap`, '-q', ...(key ? ['--keylog', `${REPO}/${dir}/keys.log`] : [])];
  const r = spawnSync(process.execPath, args, { encoding: 'utf8' });
  expect(r.status).toBe(0);
  return r.stdout.trim().split('\n').map((l) => JSON.parse(l));
}

describe('log view in headless Chromium, events from the real broker', () => {
  let h: RunHandle;
  let port: number;
  let browser: Browser;
  let expected: Ev[];

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: install Debian's chromium (scripts/ensure-test-deps.sh does)`);
    ensureBuilt();
    expected = FIXTURES.flatMap((f) => replayEvents(f.dir, f.key));
    const c = client();
    const t = uniq('logview');
    const topics = { packets: `${t}.packets`, secrets: `${t}.secrets`, events: `${t}.events` };
    for (const f of FIXTURES) {
      if (f.key) await publishKeylog(c, { file: `${REPO}/${f.dir}/keys.log`, topic: topics.secrets, partitions: 1, follow: false });
    }
    // One partition: with several, an FTP data connection can be consumed before the EPRT of its
    // control connection (the 5-tuple hash puts them on different partitions) and become an orphan.
    for (const f of FIXTURES) {
      await publishPcap(c, { capture: `${REPO}/${f.dir}/capture.pcap`, topic: topics.packets, partitions: 1, format: 'pcap', batchBytes: 512 * 1024, compression: 'none' });
    }
    const cfg = resolveRunConfig(
      { brokers: brokers(), 'packets-topic': topics.packets, 'secrets-topic': topics.secrets, 'events-topic': topics.events, 'group-id': `${t}.group`, 'stats-interval': '0', 'tcp-closed-timeout': '0', 'metrics-port': '0', 'max-cpu': '0' },
      {},
    );
    h = await startRun(c, cfg, new Writable({ write: (_c, _e, cb) => cb() }));
    port = h.ops.address!.port;
    await until('every event in the log view', async () => JSON.parse((await httpGet(port, '/api/events?limit=1')).body).held >= expected.length, 90_000);
    browser = await Browser.launch();
    await browser.goto(`http://127.0.0.1:${port}/`);
  }, 240_000);

  afterAll(async () => {
    await browser?.close();
    if (h) {
      h.stop();
      await h.done;
    }
  });

  const rows = `[...document.querySelectorAll('#log tr.logrow')].map((r) => ({ id: r.getAttribute('data-id'), dataset: r.getAttribute('data-dataset'), text: r.textContent }))`;
  type Row = { id: string; dataset: string; text: string };
  const ids = (evs: Ev[]) => evs.map((e) => e.event.id).sort();
  /** Waits until the table shows exactly `want` (by event id). */
  const showing = async (what: string, want: Ev[]): Promise<Row[]> => {
    const wantIds = JSON.stringify(ids(want));
    await browser.waitFor(what, `JSON.stringify(${rows}.map((r) => r.id).sort()) === ${JSON.stringify(wantIds)}`);
    return browser.eval<Row[]>(rows);
  };

  it('lists every event run delivered, the same as replay gives, newest first', async () => {
    const api = JSON.parse((await httpGet(port, '/api/events')).body);
    expect(api.capacity).toBe(1000);
    expect(ids(api.events)).toEqual(ids(expected));
    expect(ids(api.events)).toEqual(ids(expected));
    const shown = await showing('all events', expected);
    expect(shown.map((r) => r.id)).toEqual(api.events.map((e: Ev) => e.event.id)); // the API's order: newest first
    expect(await browser.eval<string>(`document.getElementById('log-count').textContent`)).toContain(`${expected.length} of ${expected.length} recent events match`);
  });

  it('"Show only Decryption Detection" keeps the tagged events only', async () => {
    await browser.eval(`document.getElementById('log-decrypted').click()`);
    const tagged = expected.filter((e) => e.tags?.includes(TAG));
    expect(tagged.length).toBeGreaterThan(0);
    expect(tagged.length).toBeLessThan(expected.length);
    const shown = await showing('tagged events', tagged);
    expect(shown.every((r) => r.text.includes(TAG))).toBe(true);
    const api = JSON.parse((await httpGet(port, '/api/events?decrypted=1')).body);
    expect(ids(api.events)).toEqual(ids(tagged));
  });

  it('filters by dataset, by server and by free text', async () => {
    const set = (id: string, v: string, ev: string) => browser.eval(`(() => { const e = document.getElementById('${id}'); e.value = ${JSON.stringify(v)}; e.dispatchEvent(new Event('${ev}')); })()`);
    // still switched on: decrypted HTTP only
    await set('log-dataset', 'http', 'change');
    await showing('decrypted http', expected.filter((e) => e.tags?.includes(TAG) && e.event.dataset === 'http'));
    await browser.eval(`document.getElementById('log-decrypted').click()`);
    await set('log-dataset', 'tls.session', 'change');
    const sessions = expected.filter((e) => e.event.dataset === 'tls.session');
    const shown = await showing('all tls.session', sessions);
    expect(shown.some((r) => r.text.includes('no_key'))).toBe(true);
    await set('log-dataset', '', 'change');
    // server: the FTP server's address (clear text, untagged)
    await set('log-server', '10.78.0.2:21', 'input');
    const ftp = expected.filter((e) => e.destination.ip === '10.78.0.2');
    expect(ftp.length).toBeGreaterThan(3);
    await showing('the FTP server\'s events', ftp);
    await set('log-server', '', 'input');
    // free text, case-insensitive, anywhere in the event
    await set('log-text', 'blob.BIN', 'input');
    await showing('events mentioning blob.bin', expected.filter((e) => JSON.stringify(e).toLowerCase().includes('blob.bin')));
    await set('log-text', '', 'input');
    await showing('all events again', expected);
  });

  it('a row expands to the whole event, credentials redacted as in the events topic', async () => {
    const alert = expected.find((e) => e.event.dataset === 'http' && e.http?.request?.headers?.authorization)!;
    const sel = `document.querySelector('#log tr.logrow[data-id="${alert.event.id}"]')`;
    expect(await browser.eval<boolean>(`${sel}.nextElementSibling.hidden`)).toBe(true);
    await browser.eval(`${sel}.click()`);
    const pre = await browser.waitFor<string>('expanded row', `!${sel}.nextElementSibling.hidden && ${sel}.nextElementSibling.querySelector('pre').textContent`);
    expect(JSON.parse(pre)).toEqual(alert);
    expect(pre).toContain('"authorization": "Basic [REDACTED]"');
    const all = await browser.eval<string>('document.body.innerText');
    expect(all).not.toContain(PASSWORD);
    expect(all).not.toContain('YWRtaW46UzNjcjN0LVB3'); // base64 of admin:password
    // expanded rows stay expanded across the page's next poll
    await browser.eval(`document.getElementById('log-decrypted').click()`);
    await browser.waitFor('re-rendered', `document.querySelectorAll('#log tr.logrow').length < ${expected.length}`);
    expect(await browser.eval<boolean>(`${sel}.nextElementSibling.hidden`)).toBe(false);
  });
});
