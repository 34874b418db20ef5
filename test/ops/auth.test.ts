/**
 * Decrypted content needs a key: with a token, the status page, /assets and every /api/* answer
 * 401 without it (and carry no data), 200 with it (bearer header, or the cookie a browser gets
 * from /?token=); /metrics, /healthz and /readyz stay open unless --metrics-auth-all. `run`
 * refuses to serve beyond loopback without a token, and never writes the token anywhere.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveRunConfig } from '../../src/kafka/config.js';
import { Ops } from '../../src/ops/index.js';
import { isLoopbackHost } from '../../src/ops/auth.js';
import { Logger } from '../../src/ops/log.js';
import { InputError } from '../../src/pipeline/replay.js';
import { brokers, uniq } from '../kafka/helpers.js';
import { httpGet } from '../helpers/http.js';

const TOKEN = 'tk-' + 'a1b2c3d4e5f6a7b8c9d0';
const SECRET_TEXT = 'wire-secret-body-7f3a'; // stands for decrypted content inside an event

function event(i: number): string {
  return JSON.stringify({ '@timestamp': '2026-11-22T00:00:00Z', event: { id: `id${i}`, dataset: 'http' }, destination: { ip: '10.0.0.5', port: 443 }, http: { response: { body: { content: SECRET_TEXT } } }, tags: ['Decryption Detection'] });
}

async function serve(extra: Partial<ConstructorParameters<typeof Ops>[0]> = {}) {
  const lines: string[] = [];
  const ops = new Ops({ metricsPort: 0, governor: false, log: new Logger({ write: (l: string) => void lines.push(l) }), assets: [{ name: 'web', server: '10.0.0.5' }], ...extra });
  const port = (await ops.start())!.port;
  ops.observeSession({ serverIp: '10.0.0.5', serverPort: 443, sni: SECRET_TEXT, status: 'decrypted', decryptedBytes: 10 });
  ops.recentEvents([event(1), event(2)]);
  return { ops, port, lines };
}

describe('ops server with a token', () => {
  let s: Awaited<ReturnType<typeof serve>>;
  beforeAll(async () => {
    s = await serve({ metricsToken: TOKEN });
  });
  afterAll(async () => {
    await s.ops.stop();
  });

  const guarded = ['/', '/assets', '/api/summary', '/api/events', '/api/events?decrypted=1&dataset=http'];
  it('answers 401 without the token or with a wrong one, with no data in the answer', async () => {
    for (const path of guarded) {
      for (const headers of <Record<string, string>[]>[{}, { authorization: `Bearer ${TOKEN}x` }, { authorization: `Basic ${TOKEN}` }, { cookie: `tlsdecrypt_token=${TOKEN}` }]) {
        const r = await httpGet(s.port, path, headers);
        expect(r.status, `${path} ${JSON.stringify(headers)}`).toBe(401);
        expect(r.headers['www-authenticate']).toBe('Bearer realm="tlsdecrypt"');
        expect(r.body).not.toContain(SECRET_TEXT);
        expect(r.body).not.toContain('10.0.0.5');
        expect(r.body).not.toContain(TOKEN);
      }
    }
    expect((await httpGet(s.port, `/?token=${TOKEN}x`)).status).toBe(401);
  });

  it('answers 200 with the bearer token', async () => {
    for (const path of guarded) {
      const r = await httpGet(s.port, path, { authorization: `Bearer ${TOKEN}` });
      expect(r.status, path).toBe(200);
    }
    const ev = JSON.parse((await httpGet(s.port, '/api/events?decrypted=1&dataset=http', { authorization: `bearer ${TOKEN}` })).body);
    expect(ev.events.map((e: { event: { id: string } }) => e.event.id)).toEqual(['id2', 'id1']);
    expect(JSON.stringify(ev)).toContain(SECRET_TEXT);
  });

  it('lets a browser in with /?token=: a redirect that sets a cookie holding no token', async () => {
    const r = await httpGet(s.port, `/?token=${TOKEN}`);
    expect(r.status).toBe(303);
    expect(r.headers.location).toBe('./');
    const cookie = String(r.headers['set-cookie']);
    expect(cookie).toMatch(/^tlsdecrypt_token=[\w-]+; Path=\/; HttpOnly; SameSite=Strict$/);
    expect(cookie).not.toContain(TOKEN);
    const pair = cookie.split(';')[0];
    const page = await httpGet(s.port, '/', { cookie: `other=1; ${pair}` });
    expect(page.status).toBe(200);
    expect(page.body).toContain('Show only Decryption Detection');
    expect((await httpGet(s.port, '/api/events', { cookie: pair })).body).toContain(SECRET_TEXT);
  });

  it('keeps /metrics, /healthz and /readyz open for scrapers and probes', async () => {
    expect((await httpGet(s.port, '/metrics')).status).toBe(200);
    expect((await httpGet(s.port, '/healthz')).status).toBe(200);
    expect([200, 503]).toContain((await httpGet(s.port, '/readyz')).status);
  });

  it('never logs the token', () => {
    expect(s.lines.join('\n')).toContain('"authRequired":true');
    expect(s.lines.join('\n')).not.toContain(TOKEN);
  });
});

describe('ops server without a token (loopback) and with --metrics-auth-all', () => {
  it('serves everything on loopback without a token, as before', async () => {
    const s = await serve();
    try {
      for (const path of ['/', '/assets', '/api/summary', '/api/events', '/metrics']) expect((await httpGet(s.port, path)).status).toBe(200);
    } finally {
      await s.ops.stop();
    }
  });

  it('puts /metrics, /healthz and /readyz behind the token with metricsAuthAll', async () => {
    const s = await serve({ metricsToken: TOKEN, metricsAuthAll: true });
    try {
      for (const path of ['/metrics', '/healthz', '/readyz']) {
        expect((await httpGet(s.port, path)).status).toBe(401);
        expect((await httpGet(s.port, path, { authorization: `Bearer ${TOKEN}` })).status).not.toBe(401);
      }
    } finally {
      await s.ops.stop();
    }
  });
});

describe('run options for the token', () => {
  const base = { brokers: '127.0.0.1:1', 'packets-topic': 'p', 'metrics-port': '9464' };
  it('knows loopback addresses', () => {
    for (const h of ['127.0.0.1', '127.9.9.9', '::1', '[::1]', 'localhost', '::ffff:127.0.0.1']) expect(isLoopbackHost(h), h).toBe(true);
    for (const h of ['0.0.0.0', '::', '10.96.0.1', 'fd96::1', 'example.org', '::ffff:10.0.0.1']) expect(isLoopbackHost(h), h).toBe(false);
  });

  it('refuses to serve beyond loopback without a token, naming the ways to give one', () => {
    for (const host of ['0.0.0.0', '::', '10.96.0.1']) {
      expect(() => resolveRunConfig({ ...base, 'metrics-host': host }, {})).toThrow(InputError);
      expect(() => resolveRunConfig({ ...base, 'metrics-host': host }, {})).toThrow(/serves decrypted events beyond loopback: give a token \(--metrics-token-file FILE, TLSDECRYPT_METRICS_TOKEN or --metrics-token\)/);
    }
    // no server, or loopback: no token needed
    expect(resolveRunConfig({ brokers: '127.0.0.1:1', 'packets-topic': 'p', 'metrics-host': '0.0.0.0' }, {}).ops.metricsToken).toBeUndefined();
    expect(resolveRunConfig({ ...base }, {}).ops.metricsToken).toBeUndefined();
  });

  it('takes the token from the flag, the environment or a file; never echoes a bad one', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tlsd-token-'));
    const file = join(dir, 'token');
    writeFileSync(file, `${TOKEN}\n`);
    const host = { 'metrics-host': '0.0.0.0' };
    expect(resolveRunConfig({ ...base, ...host, 'metrics-token': TOKEN }, {}).ops.metricsToken).toBe(TOKEN);
    expect(resolveRunConfig({ ...base, ...host }, { TLSDECRYPT_METRICS_TOKEN: TOKEN }).ops.metricsToken).toBe(TOKEN);
    expect(resolveRunConfig({ ...base, ...host, 'metrics-token-file': file }, {}).ops.metricsToken).toBe(TOKEN);
    expect(resolveRunConfig({ ...base, ...host, 'metrics-auth-all': true }, { TLSDECRYPT_METRICS_TOKEN: TOKEN }).ops.metricsAuthAll).toBe(true);
    const bad = (vals: Record<string, unknown>, env: Record<string, string> = {}) => {
      try {
        resolveRunConfig({ ...base, ...host, ...vals }, env);
      } catch (e) {
        expect(e).toBeInstanceOf(InputError);
        return (e as Error).message;
      }
      throw new Error('accepted');
    };
    expect(bad({ 'metrics-token': 'short-tok' })).toBe('the metrics token must be at least 16 characters without spaces');
    expect(bad({ 'metrics-token-file': join(dir, 'missing') })).toContain('cannot read --metrics-token-file');
    writeFileSync(file, '\nline two holds no token\n');
    expect(bad({ 'metrics-token-file': file })).toContain('the first line is empty');
    expect(bad({ 'metrics-token-file': file, 'metrics-token': TOKEN })).not.toContain(TOKEN);
  });

  it('tlsdecrypt run exits 2 with one line when it would serve beyond loopback without a token', () => {
    const r = spawnSync(process.execPath, ['dist/src/cli.js', 'run', '--brokers', '127.0.0.1:1', '--metrics-port', '0', '--metrics-host', '0.0.0.0'], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status).toBe(2);
    expect(r.stderr.trimEnd().split('\n')).toEqual([expect.stringMatching(/^tlsdecrypt: --metrics-host 0\.0\.0\.0 serves decrypted events beyond loopback: give a token/)]);
  });

  it('tlsdecrypt run with a token writes it into no log line, even at debug level', () => {
    const t = uniq('auth');
    const r = spawnSync(process.execPath, ['dist/src/cli.js', 'run', '--brokers', brokers(), '--packets-topic', `${t}.missing`, '--metrics-port', '0', '--metrics-host', '0.0.0.0', '--stdout'], {
      encoding: 'utf8',
      timeout: 90_000,
      env: { ...process.env, TLSDECRYPT_METRICS_TOKEN: TOKEN, TLSDECRYPT_LOG_LEVEL: 'debug' },
    });
    expect(r.status).toBe(2); // the packets topic does not exist: after the ops server started
    expect(r.stderr).toContain('"authRequired":true');
    expect(r.stderr + r.stdout).not.toContain(TOKEN);
  });
});
