/**
 * What a new user runs into when following the README with ordinary mistakes (the round-10
 * acceptance pass): each case is one that misbehaved before its fix. The built CLI (dist/) as a
 * child process.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const CLI = 'dist/src/cli.js';
const DEMO = 'fixtures/https/tls13-aes128gcm-h2';
const dir = mkdtempSync(join(tmpdir(), 'tlsd-acc-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function run(args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function expectOneLineError(r: { code: number | null; stderr: string }, re: RegExp) {
  expect(r.code).toBe(2);
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(re);
}

describe('--out naming an input', () => {
  it('refuses the capture itself (exit 2) and leaves it whole', () => {
    const cap = join(dir, 'c.pcap');
    copyFileSync(`${DEMO}/capture.pcap`, cap);
    const size = statSync(cap).size;
    const r = run(['replay', cap, '--keylog', `${DEMO}/keys.log`, '--out', cap]);
    expectOneLineError(r, /--out .*c\.pcap is the input .*c\.pcap/);
    expect(statSync(cap).size).toBe(size);
  });

  it('refuses a key log reached by another name (a symbolic link) and leaves it whole', () => {
    const keys = join(dir, 'keys.log');
    copyFileSync(`${DEMO}/keys.log`, keys);
    const link = join(dir, 'events.json');
    symlinkSync(keys, link);
    const r = run(['replay', `${DEMO}/capture.pcap`, '--keylog', keys, '--out', link]);
    expectOneLineError(r, /is the input .*keys\.log/);
    expect(readFileSync(keys, 'utf8')).toBe(readFileSync(`${DEMO}/keys.log`, 'utf8'));
  });

  it('still writes an existing output file that is no input', () => {
    const out = join(dir, 'out.json');
    copyFileSync(`${DEMO}/keys.log`, out); // old content, to be replaced
    const r = run(['replay', `${DEMO}/capture.pcap`, '--keylog', `${DEMO}/keys.log`, '--out', out, '-q']);
    expect(r.code).toBe(0);
    const lines = readFileSync(out, 'utf8').trim().split('\n');
    expect(lines).toHaveLength(4);
    for (const l of lines) expect(JSON.parse(l).event.module).toBe('tlsdecrypt');
  });

  it('run refuses to append events to its own key log', () => {
    const keys = join(dir, 'run-keys.log');
    copyFileSync(`${DEMO}/keys.log`, keys);
    // refused before any Kafka connection: the broker address is never dialled
    const r = run(['run', '--brokers', '127.0.0.1:1', '--keylog', keys, '--out', keys]);
    expectOneLineError(r, /--out .*run-keys\.log is the input/);
    expect(readFileSync(keys, 'utf8')).toBe(readFileSync(`${DEMO}/keys.log`, 'utf8'));
  });
});
