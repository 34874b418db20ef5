/**
 * What a new user meets first: --help on every command and subcommand, --version, unknown flags,
 * and the progress line of a long replay, which appears only when stderr is a terminal (a pseudo
 * terminal from util-linux `script` here) and never in a pipe or with --quiet.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { progressLine } from '../../src/pipeline/progress.js';

const CLI = 'dist/src/cli.js';
const FX = 'fixtures/https/tls13-64k-http11';

function run(args: string[], input?: Buffer) {
  const r = spawnSync(process.execPath, [CLI, ...args], { input, encoding: 'buffer', timeout: 120_000 });
  return { code: r.status, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

/** Runs a shell command line under a pseudo-terminal; returns what the terminal showed. */
function onTerminal(cmd: string): string {
  const r = spawnSync('script', ['-qfec', cmd, '/dev/null'], { encoding: 'utf8', timeout: 120_000 });
  expect(r.status).toBe(0);
  return r.stdout;
}

describe('help, version and unknown flags', () => {
  const cases: [string[], RegExp][] = [
    [['--help'], /tlsdecrypt replay CAPTURE[\s\S]*tlsdecrypt run[\s\S]*tlsdecrypt publish pcap/],
    [['-h'], /tlsdecrypt replay CAPTURE/],
    [['help'], /tlsdecrypt replay CAPTURE/],
    [['replay', '--help'], /^usage: tlsdecrypt replay CAPTURE[\s\S]*--keylog FILE[\s\S]*--only-decrypted[\s\S]*--quiet/],
    [['replay', 'whatever.pcap', '--frobnicate', '-h'], /^usage: tlsdecrypt replay CAPTURE/],
    [['help', 'replay'], /^usage: tlsdecrypt replay CAPTURE/],
    [['run', '--help'], /^usage: tlsdecrypt run[\s\S]*--brokers V  \(TLSDECRYPT_BROKERS\)[\s\S]*--metrics-port/],
    [['publish', '--help'], /tlsdecrypt publish pcap CAPTURE[\s\S]*tlsdecrypt publish keylog FILE/],
    [['publish', 'pcap', '--help'], /^usage: tlsdecrypt publish pcap CAPTURE[\s\S]*--format pcap\|frame[\s\S]*--secrets-topic/],
    [['publish', 'keylog', '--help'], /^usage: tlsdecrypt publish keylog FILE[\s\S]*--follow[\s\S]*--poll-ms/],
  ];
  for (const [args, want] of cases) {
    it(`tlsdecrypt ${args.join(' ')} prints its usage to stdout and exits 0`, () => {
      const r = run(args);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(want);
      expect(r.stderr).toBe('');
    });
  }

  it('--version prints the package version', () => {
    const version = JSON.parse(readFileSync('package.json', 'utf8')).version;
    for (const flag of ['--version', '-V', 'version']) {
      const r = run([flag]);
      expect(r.code).toBe(0);
      expect(r.stdout.trim()).toBe(`tlsdecrypt ${version} (node ${process.version})`);
    }
  });

  const unknown: [string[], string, string][] = [
    [['replay', `${FX}/capture.pcap`, '--frobnicate'], "unknown option '--frobnicate' for replay", 'usage: tlsdecrypt replay CAPTURE'],
    [['run', '--brokers', '127.0.0.1:1', '--no-such-thing=3'], "unknown option '--no-such-thing' for run", 'usage: tlsdecrypt run'],
    [['publish', 'pcap', `${FX}/capture.pcap`, '--topik', 't'], "unknown option '--topik' for publish", 'usage: tlsdecrypt publish pcap CAPTURE | keylog FILE'],
    [['publish', 'keylog', 'k.log', '-x'], "unknown option '-x' for publish", 'usage: tlsdecrypt publish'],
  ];
  for (const [args, first, usage] of unknown) {
    it(`${args.slice(0, 2).join(' ')} with an unknown flag: one line naming it, then the usage line, exit 2`, () => {
      const r = run(args);
      expect(r.code).toBe(2);
      expect(r.stdout).toBe('');
      const lines = r.stderr.trimEnd().split('\n');
      expect(lines).toHaveLength(2);
      expect(lines[0]).toBe(`tlsdecrypt: ${first}`);
      expect(lines[1].startsWith(usage)).toBe(true);
      expect(r.stderr).not.toMatch(/positional|ERR_PARSE_ARGS|\bat .*\.js:\d+/);
    });
  }

  it('without a command: the usage on stderr, exit 2', () => {
    const r = run([]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('tlsdecrypt replay CAPTURE');
  });
});

describe('files shorter than their format\'s header (fixtures/bad/short-header)', () => {
  for (const [file, msg] of [
    ['capture.pcap', '12 bytes, shorter than a pcap file header (24 bytes)'],
    ['capture.pcapng', '20 bytes, shorter than a pcapng file header (28 bytes)'],
  ]) {
    const path = `fixtures/bad/short-header/${file}`;
    it(`${file}: exit 2, one line naming the file, from a path and from stdin`, () => {
      for (const [args, input, name] of [
        [['replay', path], undefined, path],
        [['replay', '-'], readFileSync(path), 'stdin'],
      ] as const) {
        const r = run([...args], input);
        expect(r.code).toBe(2);
        expect(r.stdout).toBe('');
        expect(r.stderr).toBe(`tlsdecrypt: ${name}: ${msg}\n`);
      }
    });
  }

  it('a pcap whose header is whole but which holds no packet is a capture (exit 0)', () => {
    const r = run(['replay', '-'], readFileSync(`${FX}/capture.pcap`).subarray(0, 24));
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/^tlsdecrypt: 0 packets/);
  });
});

describe('progress on stderr', () => {
  it('is formatted with bytes, percent, packets/s, Gbps, sessions and ETA (file) or without percent (stdin)', () => {
    const s = { bytes: 50_000_000, packets: 40_000, decrypted: 12 };
    expect(progressLine(s, 2, 200_000_000)).toBe(
      'tlsdecrypt: 50.0 MB of 200.0 MB (25.0 %), 20,000 packets/s, 0.20 Gbps, 12 sessions decrypted, ETA 0:06',
    );
    expect(progressLine(s, 2, undefined)).toBe('tlsdecrypt: 50.0 MB read, 20,000 packets/s, 0.20 Gbps, 12 sessions decrypted');
    expect(progressLine({ ...s, decrypted: undefined }, 4, 200_000_000_000)).toBe('tlsdecrypt: 50.0 MB of 200.0 GB (0.0 %), 10,000 packets/s, 0.10 Gbps, ETA 4:26:36');
  });

  const args = `replay ${FX}/capture.pcap --keylog ${FX}/keys.log`;
  it('appears on a terminal with the file size and percent, and is erased before the summary', () => {
    const shown = onTerminal(`node ${CLI} ${args} >/dev/null`);
    const size = (readFileSync(`${FX}/capture.pcap`).length / 1000).toFixed(1);
    expect(shown).toContain(`\rtlsdecrypt: 0 B of ${size} KB (0.0 %), `);
    expect(shown).toMatch(/packets\/s, [\d.]+ Gbps, \d+ sessions decrypted/);
    // the line is erased (CR, erase to end of line) and the summary follows on a clean line
    expect(shown).toMatch(/\r\x1b\[Ktlsdecrypt: \d+ packets, \d+ TCP flows/);
  });

  it('on stdin counts bytes and rates without percent, redrawn while input arrives', () => {
    const f = `${FX}/capture.pcap`;
    const shown = onTerminal(`(head -c 100000 ${f}; sleep 1.3; tail -c +100001 ${f}) | node ${CLI} replay - --keylog ${FX}/keys.log >/dev/null`);
    const lines = shown.split('\r').filter((l) => l.startsWith('tlsdecrypt: ') && l.includes('read,'));
    expect(lines.some((l) => l.startsWith('tlsdecrypt: 100.0 KB read, '))).toBe(true);
    expect(shown).not.toMatch(/ of |%|ETA/);
  });

  it('never appears with --quiet on a terminal, nor when stderr is not a terminal', () => {
    expect(onTerminal(`node ${CLI} ${args} --quiet >/dev/null`)).toBe('');
    const piped = run(args.split(' '));
    expect(piped.code).toBe(0);
    expect(piped.stderr).not.toContain('\r');
    expect(piped.stderr.trimEnd().split('\n')).toHaveLength(1);
  });
});
