/**
 * Detection on real captures.
 *
 * fixtures/detect/<name>: made by scripts/fixtures/make-detect.sh with curl / openssl against
 * nginx / openssl s_server in network namespaces; meta.json lists the command (the oracle of what
 * was sent, with client.log = curl -v) and the alerts expected. Every expected alert must be
 * raised, and nothing else.
 *
 * fixtures/https, smtp, ftp: the clean captures of the other stages. The alerts they legitimately
 * raise are listed below, fixture by fixture; everything else must stay silent.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULT_THRESHOLD_OPTIONS, get, type EcsAlert } from '../../src/detect/index.js';
import { replayDetect, type DetectRun } from './harness.js';

/** `--alerts all`: every rule hit alerts (the expectations below count hits). */
const ALL = { threshold: { ...DEFAULT_THRESHOLD_OPTIONS, enabled: false } };

const isSummary = (a: EcsAlert): boolean => get(a, 'detection.threshold.summary') === true;

/**
 * With default thresholding (limit 1 per rule, source, destination, server name and hour) the same
 * capture raises a subset of the hit alerts plus summaries, and accounts for every hit: per rule,
 * alerts + held-back hits reported in summaries = the hits of `--alerts all`; every rule that fired
 * still fires; each alert is one of the all-mode alerts (same id).
 */
function expectThresholdAccounting(all: DetectRun, thr: DetectRun): void {
  const count = (xs: EcsAlert[]): Record<string, number> => {
    const m: Record<string, number> = {};
    for (const a of xs) m[a.rule.id] = (m[a.rule.id] ?? 0) + (isSummary(a) ? Number(get(a, 'detection.threshold.suppressed')) : 1);
    return m;
  };
  expect(count(thr.alerts)).toEqual(count(all.alerts));
  const allIds = new Set(all.alerts.map((a) => a.event.id));
  for (const a of thr.alerts.filter((x) => !isSummary(x))) expect(allIds.has(a.event.id), a.event.id).toBe(true);
  // the events themselves are unchanged
  expect(thr.events).toEqual(all.events);
}

interface Expected {
  rule: string;
  dataset?: string;
  'url.path'?: string;
  evidence_contains?: string;
  query_contains?: string;
  count?: number;
}
interface Meta {
  description: string;
  command: string;
  expect: {
    alerts: Expected[];
    /** A throwaway credential of the fixture that must appear in no event and no alert (also not base64). */
    secret_never_in_output?: string;
    secret_user?: string;
    /** The engine must emit this dataset for the capture (clear-text SMTP/FTP go through the protocol dispatcher). */
    requires_dataset?: string;
  };
}

function captureOf(dir: string): string | undefined {
  for (const f of ['capture.pcap', 'capture.pcapng']) if (existsSync(join(dir, f))) return join(dir, f);
  return undefined;
}
function keysOf(dir: string): string[] {
  return existsSync(join(dir, 'keys.log')) ? [join(dir, 'keys.log')] : [];
}
function matches(a: EcsAlert, e: Expected): boolean {
  if (a.rule.id !== e.rule) return false;
  // meta.json names the dataset of the triggering event
  if (e.dataset !== undefined && get(a, 'detection.trigger_dataset') !== e.dataset) return false;
  if (e['url.path'] !== undefined && get(a, 'url.path') !== e['url.path']) return false;
  if (e.evidence_contains !== undefined && !a.event.reason.toLowerCase().includes(e.evidence_contains.toLowerCase())) return false;
  if (e.query_contains !== undefined && !String(get(a, 'url.query') ?? '').includes(e.query_contains)) return false;
  return true;
}

const DETECT = 'fixtures/detect';
const detectFixtures = existsSync(DETECT)
  ? readdirSync(DETECT, { withFileTypes: true })
      .filter((d) => d.isDirectory() && existsSync(join(DETECT, d.name, 'meta.json')) && captureOf(join(DETECT, d.name)))
      .map((d) => d.name)
      .sort()
  : [];

describe('detection fixtures (fixtures/detect)', () => {
  it('has the fixtures', () => {
    expect(detectFixtures).toEqual(
      expect.arrayContaining(['scanner-ua', 'web-attacks', 'downloads', 'basic-auth', 'cert-expired', 'cert-not-yet-valid', 'cert-name-mismatch', 'cert-self-signed', 'no-sni-ip', 'tls11-cbc', 'beacon', 'dga-sni', 'tls-no-http', 'smtp-clear-auth', 'ftp-clear-login-exe']),
    );
  });

  for (const name of detectFixtures) {
    it(name, () => {
      const dir = join(DETECT, name);
      const meta = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8')) as Meta;
      const run = replayDetect(captureOf(dir)!, keysOf(dir), ALL);
      expect(run.events.length).toBeGreaterThan(0);
      expectThresholdAccounting(run, replayDetect(captureOf(dir)!, keysOf(dir)));
      const need = meta.expect.requires_dataset;
      if (need) expect(run.events.some((e) => e.event.dataset === need), `${need} events`).toBe(true);
      const left = [...run.alerts];
      for (const e of meta.expect.alerts) {
        const n = e.count ?? 1;
        for (let i = 0; i < n; i++) {
          const k = left.findIndex((a) => matches(a, e));
          expect(k, `expected alert ${JSON.stringify(e)}; got ${run.alerts.map((a) => `${a.rule.id} ${a.event.reason}`).join(' | ')}`).toBeGreaterThanOrEqual(0);
          left.splice(k, 1);
        }
      }
      expect(left.map((a) => `${a.rule.id}: ${a.event.reason}`), 'unexpected alerts').toEqual([]);
      // every alert follows its triggering event in the output and copies its flow
      for (const a of run.alerts) {
        const trig = run.events.find((e) => e.event.id === (a as Record<string, any>).detection.trigger_event_id);
        expect(trig).toBeDefined();
        expect(a.network.community_id).toBe(trig!.network.community_id);
        expect(run.output.indexOf(a)).toBeGreaterThan(run.output.indexOf(trig!));
      }
      const secret = meta.expect.secret_never_in_output;
      if (secret) {
        const text = JSON.stringify(run.output);
        const b64 = (s: string): string => Buffer.from(s).toString('base64').replace(/=+$/, '');
        for (const form of [secret, b64(secret), b64(`${meta.expect.secret_user ?? ''}:${secret}`), b64(`\0${meta.expect.secret_user ?? ''}\0${secret}`)]) {
          expect(text).not.toContain(form);
        }
      }
    });
  }

  it('beacon: the 5th of 6 connections 2 s apart completes the series, by capture time', () => {
    const run = replayDetect('fixtures/detect/beacon/capture.pcap', ['fixtures/detect/beacon/keys.log'], ALL);
    const sessions = run.events.filter((e) => e.event.dataset === 'tls.session');
    expect(sessions.length).toBe(6);
    const [a] = run.alerts.filter((x) => x.rule.id === 'host.beaconing');
    expect(a.event.reason).toMatch(/^5 connections every 2\.0\d s/);
    expect(a.tags).toBeUndefined();
  });

  it('basic-auth: the HTTP event keeps the scheme only', () => {
    const run = replayDetect('fixtures/detect/basic-auth/capture.pcap', ['fixtures/detect/basic-auth/keys.log']);
    const h = run.events.find((e) => e.event.dataset === 'http')!;
    expect(get(h, 'http.request.headers.authorization')).toBe('Basic [REDACTED]');
    expect(get(h, 'http.response.status_code')).toBe(200);
  });

  it('the same capture gives the same alert ids', () => {
    const a = replayDetect('fixtures/detect/web-attacks/capture.pcap', ['fixtures/detect/web-attacks/keys.log'], ALL).alerts.map((x) => x.event.id);
    const b = replayDetect('fixtures/detect/web-attacks/capture.pcap', ['fixtures/detect/web-attacks/keys.log'], ALL).alerts.map((x) => x.event.id);
    expect(a.length).toBe(7);
    expect(a).toEqual(b);
    // thresholded: one alert per rule for the one client/server pair, plus a summary for each
    // rule that hit more than once (sql_injection 3, xss 2, command_injection 2, scanner 1)
    const c = replayDetect('fixtures/detect/web-attacks/capture.pcap', ['fixtures/detect/web-attacks/keys.log']).alerts;
    const d = replayDetect('fixtures/detect/web-attacks/capture.pcap', ['fixtures/detect/web-attacks/keys.log']).alerts;
    expect(c.map((x) => x.event.id)).toEqual(d.map((x) => x.event.id));
    expect(c.filter((x) => !isSummary(x)).length).toBe(new Set(c.map((x) => x.rule.id)).size);
  });
});

/**
 * Alerts the clean fixtures legitimately raise with `--alerts all` (rule ids, sorted; with default
 * thresholding the two numeric_host hits of one connection become one alert and a summary that
 * counts the second — checked by expectThresholdAccounting). Fixtures not listed here are
 * expected to raise none: the fixture certificates are issued by the test CA for the SNI used
 * (not self-signed, not expired), all HTTP is ordinary, every client sends SNI.
 */
const CLEAN_EXPECTED: Record<string, string[]> = {
  'fixtures/https/tls12-ecdhe-cbc-sha1-http11': ['tls.weak_cipher'], // ECDHE-RSA-AES128-SHA: CBC with HMAC-SHA1
  'fixtures/https/tls12-ecdhe-cbc-sha1-noetm-http11': ['tls.weak_cipher'], // same suite, MAC-then-encrypt
  'fixtures/https/tls12-rsa-aes128gcm-http11': ['tls.weak_cipher'], // RSA key exchange
  'fixtures/https/tls12-rsa-cbc-sha256-noems-http11': ['tls.weak_cipher'], // RSA key exchange
  'fixtures/https/tls12-rsa-renegotiation': ['tls.weak_cipher'], // RSA key exchange
  'fixtures/https/tls12-rsa-ticket-resumption': ['tls.weak_cipher', 'tls.weak_cipher'], // RSA key exchange, 2 connections
  // the legacy bulk ciphers (gnutls-cli against gnutls-serv): 3DES, RC4, NULL are weak by name
  'fixtures/https/tls10-gnutls-3des-http11': ['tls.outdated_version', 'tls.weak_cipher'], // TLS 1.0, RSA, 3DES
  'fixtures/https/tls12-gnutls-3des-http11': ['tls.weak_cipher'],
  'fixtures/https/tls12-gnutls-null-http11': ['tls.weak_cipher'],
  'fixtures/https/tls12-gnutls-rc4-http11': ['tls.weak_cipher'],
  // curl to https://10.77.0.2/ (IP literal): no SNI, and both requests name the numeric host
  'fixtures/https/tls13-nosni-http11': ['http.numeric_host', 'http.numeric_host', 'tls.missing_sni'],
};

const clean = ['fixtures/https', 'fixtures/smtp', 'fixtures/ftp'].flatMap((root) =>
  existsSync(root)
    ? readdirSync(root, { withFileTypes: true })
        .filter((d) => d.isDirectory() && captureOf(join(root, d.name)))
        .map((d) => join(root, d.name))
        .sort()
    : [],
);

describe('clean fixtures raise only the alerts listed for them', () => {
  it('has clean fixtures', () => {
    expect(clean.filter((d) => d.startsWith('fixtures/https/')).length).toBeGreaterThanOrEqual(10);
  });
  for (const dir of clean) {
    it(dir, () => {
      const run = replayDetect(captureOf(dir)!, keysOf(dir), ALL);
      const got = run.alerts.map((a) => a.rule.id).sort();
      expect(got, run.alerts.map((a) => `${a.rule.id}: ${a.event.reason}`).join(' | ')).toEqual(CLEAN_EXPECTED[dir] ?? []);
      expect(run.detector.stats.ruleErrors).toBe(0);
      expectThresholdAccounting(run, replayDetect(captureOf(dir)!, keysOf(dir)));
    });
  }
});
