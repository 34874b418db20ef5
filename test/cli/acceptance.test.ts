/**
 * What a new user runs into when following the README with ordinary mistakes (the round-10
 * acceptance pass): each case is one that misbehaved before its fix. The built CLI (dist/) as a
 * child process.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createPrivateKey } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
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

  it("'-' is stdout (as CAPTURE '-' is stdin), not a file named '-'", () => {
    const r = spawnSync(process.execPath, [join(process.cwd(), CLI), 'replay', join(process.cwd(), DEMO, 'capture.pcap'), '--keylog', join(process.cwd(), DEMO, 'keys.log'), '--out', '-', '-q'], { cwd: dir, encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout.trim().split('\n')).toHaveLength(4);
    expect(existsSync(join(dir, '-'))).toBe(false);
  });

  it.each([
    [['/no/such.pcap', '--keylog', `${DEMO}/keys.log`], /^tlsdecrypt: cannot read capture \/no\/such\.pcap: ENOENT$/],
    [[`${DEMO}/capture.pcap`, '--keylog', '/no/keys.log'], /^tlsdecrypt: cannot read key log \/no\/keys\.log: ENOENT$/],
    [[`${DEMO}/capture.pcap`, '--rsa-key', '/no/server.pem'], /^tlsdecrypt: \/no\/server\.pem: cannot read file \(ENOENT\)$/],
  ])('a mistyped input %j fails before the previous results in --out are truncated', (args, re) => {
    const out = join(dir, 'previous-results.json');
    copyFileSync(`${DEMO}/keys.log`, out); // stands for the last run's events
    expectOneLineError(run(['replay', ...args, '--out', out]), re);
    expect(readFileSync(out, 'utf8')).toBe(readFileSync(`${DEMO}/keys.log`, 'utf8'));
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

/**
 * The demo capture cut after its first exchange (the connection still open), then ~1.2 MiB of
 * non-IP filler frames: with `--workers N` a stdin chunk (1 MiB) goes to the engines once it is
 * full, so the filler makes the first exchange come out while the input is still open.
 */
function openConnectionThenFiller(): Buffer {
  const cap = readFileSync(`${DEMO}/capture.pcap`);
  const parts = [cap.subarray(0, 24)];
  let off = 24;
  // 20 records: the first exchange (stream 1) is complete, the connection goes on
  for (let n = 0; n < 20; n++) {
    const len = 16 + cap.readUInt32LE(off + 8);
    parts.push(cap.subarray(off, off + len));
    off += len;
  }
  const frame = Buffer.alloc(16 + 60_000);
  frame.writeUInt32LE(cap.readUInt32LE(24), 0); // the capture's first second
  frame.writeUInt32LE(60_000, 8);
  frame.writeUInt32LE(60_000, 12);
  frame.writeUInt16BE(0x88b5, 16 + 12); // IEEE local experimental EtherType: not IP
  for (let i = 0; i < 20; i++) parts.push(frame);
  return Buffer.concat(parts);
}

describe('SIGINT / SIGTERM in the middle of a replay', () => {
  it.each([
    ['SIGINT', 130, []],
    ['SIGTERM', 143, []],
    ['SIGINT', 130, ['--workers', '2']],
  ] as const)('%s: the open connection is reported, the summary says so, exit %i (%j)', async (sig, code, extra) => {
    const child = spawn(process.execPath, [CLI, 'replay', '-', '--keylog', `${DEMO}/keys.log`, ...extra], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    child.stdin.on('error', () => {}); // EPIPE: the child exits before it read all of it
    const exited = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    // the input stays open: only the signal ends it
    child.stdin.write(openConnectionThenFiller());
    await new Promise<void>((resolve) =>
      child.stdout.on('data', (d: Buffer) => {
        stdout += d;
        if (stdout.includes('"dataset":"http"')) resolve();
      }),
    );
    child.kill(sig);
    expect(await exited).toBe(code);
    child.stdin.destroy();
    const events = stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(events.filter((e) => e.event.dataset === 'http')).toHaveLength(1);
    const session = events.find((e) => e.event.dataset === 'tls.session');
    expect(session?.tls.client.server_name).toBe('www.tlsdecrypt.test');
    expect(stderr.trim().split('\n')).toHaveLength(1);
    expect(stderr).toMatch(new RegExp(`^tlsdecrypt: \\d+ packets, 1 TCP flows, 1 TLS sessions .*, ${events.length} events.*; interrupted by ${sig}\\n$`));
  });
});

describe('--rsa-key FILE:PASSWORD with colons', () => {
  const RSA = 'fixtures/https/tls12-rsa-aes128gcm-http11';
  const decrypted = (r: { code: number | null; stderr: string }) => {
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('(decrypted 1)');
  };

  it('a path holding a colon, with a password', () => {
    const sub = join(dir, 'keys:2026');
    mkdirSync(sub);
    copyFileSync(`${RSA}/server.enc.pem`, join(sub, 'server.pem'));
    decrypted(run(['replay', `${RSA}/capture.pcap`, '--rsa-key', `${sub}/server.pem:test-password`]));
  });

  it('a password holding a colon', () => {
    const key = createPrivateKey(readFileSync(`${RSA}/server.key`));
    const pem = join(dir, 'colon-pw.pem');
    writeFileSync(pem, key.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'pa:ss:word' }));
    decrypted(run(['replay', `${RSA}/capture.pcap`, '--rsa-key', `${pem}:pa:ss:word`]));
  });

  it('a missing file is named without any of the password', () => {
    const r = run(['replay', `${RSA}/capture.pcap`, '--rsa-key', `${dir}/nope.pem:secret:part`]);
    expectOneLineError(r, /nope\.pem/);
    expect(r.stderr).not.toContain('secret');
    expect(r.stderr).not.toContain('part');
  });
});

describe('an option whose value is missing before another option', () => {
  it.each([
    [['replay', `${DEMO}/capture.pcap`, '--limits', '--quiet'], /^tlsdecrypt: replay: --limits needs a value, and the argument after it starts with '-' \(a value that starts with '-' is written --limits=VALUE\)$/],
    [['replay', `${DEMO}/capture.pcap`, '--workers', '-2'], /--workers needs a value/],
    [['run', '--brokers', '127.0.0.1:1', '--sasl-password', '-pw-secret-9'], /^tlsdecrypt: run: --sasl-password needs a value/],
  ])('%j names the option and how to write the value, in one line with the usage', (args, re) => {
    const r = run(args);
    expect(r.code).toBe(2);
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines).toHaveLength(2); // the message, then the usage line
    expect(lines[0]).toMatch(re);
    expect(lines[1]).toMatch(/^usage: tlsdecrypt /);
    expect(r.stderr).not.toContain('pw-secret');
  });
});

describe('options that contradict each other', () => {
  it('--alerts with --no-detect is refused (the alerts setting would be silently ignored)', () => {
    const r = run(['replay', `${DEMO}/capture.pcap`, '--no-detect', '--alerts', 'all']);
    expectOneLineError(r, /^tlsdecrypt: --alerts all has no effect with --no-detect/);
    expect(r.stdout).toBe('');
  });
});

describe('the events destination fails (disk full: /dev/full)', () => {
  it.each([
    [['--out', '/dev/full'], 'cannot write events to /dev/full: ENOSPC'],
    [['--out', '/dev/full', '--workers', '2'], 'cannot write events to /dev/full: ENOSPC'],
  ])('%j: exit 2 with one line, no stack', (extra, line) => {
    const r = run(['replay', `${DEMO}/capture.pcap`, '--keylog', `${DEMO}/keys.log`, ...extra]);
    expectOneLineError(r, new RegExp(`^tlsdecrypt: ${line}$`));
  });

  it.each([[[]], [['--workers', '2']]])('stdout %j: exit 2 with one line, no stack', (extra) => {
    const r = spawnSync('bash', ['-c', `"${process.execPath}" ${CLI} replay ${DEMO}/capture.pcap --keylog ${DEMO}/keys.log ${extra.join(' ')} >/dev/full`], { encoding: 'utf8' });
    expectOneLineError({ code: r.status, stderr: r.stderr }, /^tlsdecrypt: cannot write events to stdout: ENOSPC$/);
  });
});

describe('a file given as --keylog that is no key log', () => {
  it.each([
    ['the capture (arguments swapped)', `${DEMO}/capture.pcap`],
    ['a PEM key', 'fixtures/https/tls12-rsa-aes128gcm-http11/server.key'],
  ])('%s: exit 2 with one line naming it, its content not echoed', (_what, file) => {
    const r = run(['replay', `${DEMO}/capture.pcap`, '--keylog', file]);
    expectOneLineError(r, new RegExp(`^tlsdecrypt: ${file.replace(/[./]/g, '\\$&')}: not an NSS key log \\(\\d+ lines, none usable; content not shown\\)$`));
    expect(r.stdout).toBe('');
  });

  it('a key log with some garbage lines among usable ones is used, the garbage counted', () => {
    const mixed = join(dir, 'mixed.log');
    writeFileSync(mixed, `garbage line\n${readFileSync(`${DEMO}/keys.log`, 'utf8')}CLIENT_RANDOM zz 11\n`);
    const r = run(['replay', `${DEMO}/capture.pcap`, '--keylog', mixed]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('(decrypted 1)');
    expect(r.stderr).toContain('keylog_malformed_line 2');
  });
});
