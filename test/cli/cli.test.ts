/**
 * The command line as users meet it: the built CLI (dist/, made by `npm test`'s build step) run as
 * a child process. Exit codes and the one-line error contract of CONTRACT.md.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const CLI = 'dist/src/cli.js';
const DEMO = 'fixtures/https/tls13-aes128gcm-h2';

function run(args: string[], input?: Buffer) {
  const r = spawnSync(process.execPath, [CLI, ...args], { input, encoding: 'buffer', timeout: 120_000 });
  return { code: r.status, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

function expectOneLineError(r: { code: number | null; stderr: string }, mentions: string) {
  expect(r.code).toBe(2);
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toContain(mentions);
  expect(lines[0]).not.toMatch(/\bat .*\.js:\d+/); // no stack trace
}

describe('tlsdecrypt CLI', () => {
  it('is built', () => {
    expect(existsSync(CLI)).toBe(true);
  });

  it('exits 2 without a command', () => {
    expect(run([]).code).toBe(2);
  });

  it('exits 2 naming an unknown command', () => {
    expectOneLineError(run(['frobnicate']), 'frobnicate');
  });

  it('exits 2 naming a capture that does not exist', () => {
    expectOneLineError(run(['replay', '/nonexistent/x.pcap']), '/nonexistent/x.pcap');
  });

  it('exits 2 naming a file that is no capture', () => {
    expectOneLineError(run(['replay', 'README.md']), 'README.md');
  });

  it('exits 2 on empty stdin', () => {
    expectOneLineError(run(['replay', '-'], Buffer.alloc(0)), 'stdin');
  });

  it('exits 2 naming an unreadable key log', () => {
    expectOneLineError(run(['replay', `${DEMO}/capture.pcap`, '--keylog', '/nonexistent/keys.log']), '/nonexistent/keys.log');
  });

  it('exits 2 naming an RSA key file that is no key, without echoing its content', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tlsd-'));
    const bad = join(dir, 'bad.key');
    writeFileSync(bad, 'SECRETSECRETSECRET\n');
    const r = run(['replay', `${DEMO}/capture.pcap`, '--rsa-key', bad]);
    expectOneLineError(r, bad);
    expect(r.stderr).not.toContain('SECRETSECRETSECRET');
  });

  it('exits 2 on a bad --workers value', () => {
    expectOneLineError(run(['replay', `${DEMO}/capture.pcap`, '--workers', 'many']), '--workers');
  });

  it('exits 2 on an unknown option, naming it in one line followed by the usage line', () => {
    const r = run(['replay', `${DEMO}/capture.pcap`, '--frobnicate']);
    expect(r.code).toBe(2);
    expect(r.stderr.trimEnd().split('\n')).toEqual([
      "tlsdecrypt: unknown option '--frobnicate' for replay",
      expect.stringMatching(/^usage: tlsdecrypt replay CAPTURE /),
    ]);
  });

  it('replays the demo capture into tagged events and a summary', () => {
    const r = run(['replay', `${DEMO}/capture.pcap`, '--keylog', `${DEMO}/keys.log`]);
    expect(r.code).toBe(0);
    const events = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(events.some((e) => e.event.dataset === 'http' && e.tags?.includes('Decryption Detection'))).toBe(true);
    expect(events.some((e) => e.event.dataset === 'tls.session' && e.decryption.status === 'decrypted')).toBe(true);
    expect(r.stderr).toMatch(/packets, .* events/);
  });

  it('reads the capture from stdin', () => {
    const file = spawnSync('cat', [`${DEMO}/capture.pcap`]).stdout;
    const a = run(['replay', '-', '--keylog', `${DEMO}/keys.log`, '-q'], file);
    const b = run(['replay', `${DEMO}/capture.pcap`, '--keylog', `${DEMO}/keys.log`, '-q']);
    expect(a.code).toBe(0);
    expect(a.stdout).toBe(b.stdout);
  });

  it('gives the same events with 2 workers as with 1', () => {
    const ids = (args: string[]) =>
      run(args)
        .stdout.trim()
        .split('\n')
        .map((l) => JSON.parse(l))
        .map((e) => JSON.stringify(e))
        .sort();
    const one = ids(['replay', `${DEMO}/capture.pcap`, '--keylog', `${DEMO}/keys.log`, '-q']);
    const two = ids(['replay', `${DEMO}/capture.pcap`, '--keylog', `${DEMO}/keys.log`, '-q', '--workers', '2']);
    expect(one.length).toBeGreaterThan(0);
    expect(two).toEqual(one);
  });

  for (const fx of ['fixtures/ftp/ftps-explicit-tls12', 'fixtures/https/tls13-parallel-http11', 'fixtures/smtp/smtp-starttls-587-curl']) {
    it(`gives the same events with 2 workers as with 1 on ${fx} (multi-connection protocols stay together)`, () => {
      const sorted = (args: string[]) =>
        run(args)
          .stdout.trim()
          .split('\n')
          .map((l) => JSON.stringify(JSON.parse(l)))
          .sort();
      const base = ['replay', `${fx}/capture.pcap`, '--keylog', `${fx}/keys.log`, '-q'];
      const one = sorted(base);
      expect(one.length).toBeGreaterThan(1);
      expect(sorted([...base, '--workers', '2'])).toEqual(one);
    });
  }

  it('gives the same events and summary on stdin and on the file with 2, 3, 8 and 16 workers, and no warning', () => {
    const fx = 'fixtures/https/tls13-parallel-http11';
    const sorted = (r: { stdout: string }) => r.stdout.trim().split('\n').sort();
    const base = ['--keylog', `${fx}/keys.log`];
    const one = run(['replay', `${fx}/capture.pcap`, ...base]);
    expect(one.stdout.trim().split('\n').length).toBeGreaterThan(2);
    for (const n of ['2', '3', '8', '16']) {
      const file = run(['replay', `${fx}/capture.pcap`, ...base, '--workers', n]);
      const stdin = run(['replay', '-', ...base, '--workers', n], readFileSync(`${fx}/capture.pcap`));
      for (const r of [file, stdin]) {
        expect(r.code).toBe(0);
        expect(sorted(r)).toEqual(sorted(one));
        // the summary line only: no MaxListenersExceededWarning or any other warning at 16
        expect(r.stderr).toBe(one.stderr);
      }
    }
  });

  it('counts a damaged capture\'s anomalies once with 3 workers, not once per shard', () => {
    const fx = 'fixtures/https/tls13-parallel-http11';
    const dir = mkdtempSync(join(tmpdir(), 'tlsd-'));
    const cut = join(dir, 'cut.pcap');
    const bytes = readFileSync(`${fx}/capture.pcap`);
    writeFileSync(cut, bytes.subarray(0, bytes.length - 7)); // last record incomplete
    const args = ['replay', cut, '--keylog', `${fx}/keys.log`];
    const one = run(args);
    const three = run([...args, '--workers', '3']);
    expect(one.stderr).toContain('capture_truncated 1');
    expect(three.code).toBe(0);
    expect(three.stderr).toBe(one.stderr);
    expect(three.stdout.trim().split('\n').sort()).toEqual(one.stdout.trim().split('\n').sort());
  });

  it('writes --out and keeps only decrypted events with --only-decrypted', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tlsd-'));
    const out = join(dir, 'events.ndjson');
    const r = run(['replay', `${DEMO}/capture.pcap`, '--out', out, '--only-decrypted', '-q']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('');
    expect(readdirSync(dir)).toContain('events.ndjson');
  });

  it('stops quietly with exit 0 when the reader of its output goes away', () => {
    const fx = 'fixtures/https/tls13-parallel-http11';
    const r = spawnSync('bash', ['-c', `set -o pipefail; "${process.execPath}" ${CLI} replay ${fx}/capture.pcap --keylog ${fx}/keys.log | head -c 10 >/dev/null`], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stderr).not.toContain('internal error');
  });

  it('never prints key material', () => {
    const r = run(['replay', `${DEMO}/capture.pcap`, '--keylog', `${DEMO}/keys.log`]);
    const secrets = require_secrets(`${DEMO}/keys.log`);
    for (const s of secrets) {
      expect(r.stdout).not.toContain(s);
      expect(r.stderr).not.toContain(s);
    }
  });
});

function require_secrets(path: string): string[] {
  const text = spawnSync('cat', [path]).stdout.toString();
  return text
    .split('\n')
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => l.trim().split(/\s+/)[2]?.toLowerCase())
    .filter((s): s is string => !!s);
}
