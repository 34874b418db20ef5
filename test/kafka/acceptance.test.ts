/**
 * The Kafka commands as a new user meets them (the round-10 acceptance pass), on the real broker.
 *
 * SASL configured against a listener without SASL (the test broker's plaintext one) — a user's
 * usual mistake of port or listener: every command that connects ends with exit 2 and one line
 * naming the brokers and the mechanism, no stack trace (before: "internal error:
 * KafkaJSProtocolError: Request is not valid given the current SASL state" and its stack, exit 1),
 * and the password is never printed.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { brokers, client, ensureBuilt, REPO, uniq } from './helpers.js';

const PASSWORD = 'pw-never-printed-7f3a';
const FX = join(REPO, 'fixtures/https/tls13-aes128gcm-h2');

describe('SASL against a plaintext listener (real broker)', () => {
  beforeAll(() => ensureBuilt(), 300_000);
  const cli = join(REPO, 'dist/src/cli.js');
  const env = { ...process.env, TLSDECRYPT_SASL_PASSWORD: PASSWORD, TLSDECRYPT_BROKERS: '' };

  it.each([
    ['publish keylog', (t: string) => ['publish', 'keylog', join(FX, 'keys.log'), '--topic', `${t}.secrets`, '--sasl-mechanism', 'plain']],
    ['publish pcap', (t: string) => ['publish', 'pcap', join(FX, 'capture.pcap'), '--topic', `${t}.packets`, '--sasl-mechanism', 'scram-sha-256']],
    ['run', (t: string) => ['run', '--packets-topic', `${t}.packets`, '--group-id', t, '--sasl-mechanism', 'scram-sha-512']],
  ])('%s: exit 2, one line, no password', (_name, args) => {
    const t = uniq('sasl');
    const r = spawnSync(process.execPath, [cli, ...args(t), '--brokers', brokers(), '--sasl-username', 'user'], { encoding: 'utf8', env, timeout: 120_000 });
    expect(r.status, r.stderr).toBe(2);
    const lines = r.stderr.trim().split('\n');
    expect(lines, r.stderr).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`^tlsdecrypt: cannot authenticate to Kafka at ${brokers().replace(/\./g, '\\.')} with SASL [\\w-]+: the broker's listener does not expect SASL`));
    expect(r.stderr + r.stdout).not.toContain(PASSWORD);
  });
});

describe('run --out on a failing file (real broker)', () => {
  beforeAll(() => ensureBuilt(), 300_000);
  const cli = join(REPO, 'dist/src/cli.js');

  it('a write error stops the run (exit 1) without committing the offsets behind the lost events', async () => {
    const t = uniq('outfull');
    const env = { ...process.env, TLSDECRYPT_BROKERS: '' };
    const pub = (args: string[]) => spawnSync(process.execPath, [cli, 'publish', ...args, '--brokers', brokers(), '-q'], { encoding: 'utf8', env, timeout: 120_000 });
    expect(pub(['pcap', join(FX, 'capture.pcap'), '--topic', `${t}.packets`, '--partitions', '1']).status).toBe(0);
    expect(pub(['keylog', join(FX, 'keys.log'), '--topic', `${t}.secrets`]).status).toBe(0);
    // /dev/full: every write fails with ENOSPC (before: the events were dropped and the offset committed)
    const r = spawnSync(
      process.execPath,
      [cli, 'run', '--brokers', brokers(), '--packets-topic', `${t}.packets`, '--secrets-topic', `${t}.secrets`, '--events-topic', '', '--out', '/dev/full', '--group-id', t],
      { encoding: 'utf8', env, timeout: 120_000 },
    );
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr).toContain('cannot deliver events');
    expect(r.stderr).toContain('ENOSPC');
    expect(r.stderr).toMatch(/, 0 commits;/);
    const admin = await client().admin();
    try {
      const offsets = await admin.groupOffsets(t, `${t}.packets`);
      expect(offsets.every((o) => o.offset === '-1')).toBe(true);
    } finally {
      await admin.close();
    }
  });
});
