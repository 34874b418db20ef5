/** `tlsdecrypt run` as a process: configuration sources, one-line errors, clean SIGTERM. */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveRunConfig } from '../../src/kafka/config.js';
import { InputError } from '../../src/pipeline/replay.js';
import { brokers, client, ensureBuilt, readAll, REPO, uniq, until } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'tlsdecrypt-runcli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('run configuration', () => {
  it('flag > environment > config file > default', () => {
    const f = join(dir, 'c.json');
    writeFileSync(f, JSON.stringify({ brokers: ['a:1', 'b:2'], groupId: 'from-file', workers: 3, 'events-topic': 'ev.file', secretsLookback: 60 }));
    const c = resolveRunConfig({ 'group-id': 'from-flag' }, { TLSDECRYPT_WORKERS: '2', TLSDECRYPT_GROUP_ID: 'from-env', TLSDECRYPT_SECRETS_TOPIC: '' }, f);
    expect(c.connection.brokers).toEqual(['a:1', 'b:2']);
    expect(c.groupId).toBe('from-flag');
    expect(c.workers).toBe(2);
    expect(c.eventsTopic).toBe('ev.file');
    expect(c.secretsTopic).toBe(''); // disabled by an empty env value
    expect(c.secretsLookbackSec).toBe(60);
    expect(c.packetsTopic).toBe('tlsdecrypt.packets');
    expect(c.maxInFlight).toBe(4);
  });

  it.each([
    [{}, {}, /needs Kafka brokers/],
    [{ brokers: 'nohost' }, {}, /not HOST:PORT/],
    [{ brokers: 'h:1', workers: '0' }, {}, /workers takes a whole number from 1 to 256, got '0'/],
    [{ brokers: 'h:1' }, { TLSDECRYPT_WORKERS: 'many' }, /environment TLSDECRYPT_WORKERS: workers takes a whole number/],
    [{ brokers: 'h:1', 'events-topic': '' }, {}, /events go nowhere/],
    [{ brokers: 'h:1', 'packets-topic': 'bad topic!' }, {}, /not a valid topic name/],
    [{ brokers: 'h:1', 'sasl-mechanism': 'plain' }, {}, /needs --sasl-username/],
    [{ brokers: 'h:1', 'start-from': 'middle' }, {}, /takes one of earliest, latest/],
    [{ brokers: 'h:1', fetch: 'fast' }, {}, /takes one of auto, native, kafkajs/],
    [{ brokers: 'h:1', fetch: 'native', 'sasl-mechanism': 'plain', 'sasl-username': 'u' }, { TLSDECRYPT_SASL_PASSWORD: 'pw' }, /--fetch native does not support SASL/],
  ])('rejects %j %j with one line', (flags, env, re) => {
    let err: unknown;
    try {
      resolveRunConfig(flags as Record<string, unknown>, env as NodeJS.ProcessEnv);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InputError);
    expect((err as Error).message).toMatch(re);
    expect((err as Error).message).not.toContain('\n');
  });

  it('config file errors name the file', () => {
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, '{"brokers": "h:1", "nope": 1}');
    expect(() => resolveRunConfig({}, {}, bad)).toThrow(`config ${bad}: unknown option 'nope'`);
    writeFileSync(bad, '{oops');
    expect(() => resolveRunConfig({}, {}, bad)).toThrow(/not valid JSON/);
    expect(() => resolveRunConfig({}, {}, join(dir, 'missing.json'))).toThrow(/cannot read config .*missing.json: ENOENT/);
  });

  it('limits: a file (flag) or an inline object (config file), explicit options win', () => {
    const lf = join(dir, 'limits.json');
    writeFileSync(lf, JSON.stringify({ tcp: { maxFlows: 1234, idleTimeoutSec: 50 }, tls: { maxPendingRecordBytesPerFlow: 4096 }, capture: { maxPacketBytes: 9000 } }));
    const c = resolveRunConfig({ brokers: 'h:1', limits: lf, 'tcp-idle-timeout': '70' }, {});
    expect(c.engine.tcp).toEqual({ maxFlows: 1234, idleTimeoutSec: 70 });
    expect(c.engine.tls).toEqual({ maxPendingRecordBytesPerFlow: 4096 });
    expect(c.captureLimits).toEqual({ maxPacketBytes: 9000 });
    const cf = join(dir, 'inline.json');
    writeFileSync(cf, JSON.stringify({ brokers: 'h:1', limits: { http: { bodyCaptureBytes: 7 } } }));
    expect(resolveRunConfig({}, {}, cf).engine.analyzers).toEqual({ http: { bodyCaptureBytes: 7 } });
    writeFileSync(cf, JSON.stringify({ brokers: 'h:1', limits: { tcp: { nope: 1 } } }));
    expect(() => resolveRunConfig({}, {}, cf)).toThrow(/unknown limit 'tcp.nope'/);
  });

  it('never echoes a SASL password', () => {
    expect(() => resolveRunConfig({ brokers: 'h:1', 'sasl-mechanism': 'plain', 'sasl-username': 'u' }, {})).toThrow(InputError);
    const c = resolveRunConfig({ brokers: 'h:1', 'sasl-mechanism': 'scram-sha-256', 'sasl-username': 'u' }, { TLSDECRYPT_SASL_PASSWORD: 'pw-secret' });
    expect(c.connection.sasl).toEqual({ mechanism: 'scram-sha-256', username: 'u', password: 'pw-secret' });
  });
});

describe('run as a process (real broker)', () => {
  beforeAll(() => ensureBuilt(), 300_000);
  const cli = join(REPO, 'dist/src/cli.js');

  it('exit 2 with one line: bad option, unreachable broker, missing packets topic', () => {
    const env = { ...process.env, TLSDECRYPT_BROKERS: '' };
    const r1 = spawnSync(process.execPath, [cli, 'run', '--brokers', 'h:1', '--workers', 'x'], { encoding: 'utf8', env });
    expect(r1.status).toBe(2);
    expect(r1.stderr.trim().split('\n').length).toBe(1);
    const r2 = spawnSync(process.execPath, [cli, 'run', '--brokers', '127.0.0.1:1'], { encoding: 'utf8', env, timeout: 120_000 });
    expect(r2.status).toBe(2);
    expect(r2.stderr.trim().split('\n')).toEqual(['tlsdecrypt: cannot reach Kafka at 127.0.0.1:1']);
    const r3 = spawnSync(process.execPath, [cli, 'run', '--brokers', brokers(), '--packets-topic', uniq('missing')], { encoding: 'utf8', env, timeout: 120_000 });
    expect(r3.status).toBe(2);
    expect(r3.stderr.trim().split('\n').length, r3.stderr).toBe(1);
    expect(r3.stderr.trim()).toMatch(/^tlsdecrypt: packets topic missing\.\S+ does not exist at /);
    const r4 = spawnSync(process.execPath, [cli, 'run', '--brokers', '127.0.0.1:1', '--out', '/nonexistent-dir/events.ndjson'], { encoding: 'utf8', env });
    expect(r4.status).toBe(2);
    expect(r4.stderr.trim().split('\n')).toEqual(['tlsdecrypt: cannot write --out /nonexistent-dir/events.ndjson: ENOENT']);
  });

  it.runIf(existsSync(join(REPO, 'fixtures/https/tls13-aes128gcm-h2/capture.pcap')))(
    'publish + run from environment and config file; SIGTERM flushes, commits, exits 0',
    async () => {
      const fx = join(REPO, 'fixtures/https/tls13-aes128gcm-h2');
      const t = uniq('runcli');
      const env = { ...process.env, TLSDECRYPT_BROKERS: brokers(), TLSDECRYPT_PACKETS_TOPIC: `${t}.packets`, TLSDECRYPT_SECRETS_TOPIC: `${t}.secrets` };
      const p1 = spawnSync(process.execPath, [cli, 'publish', 'pcap', join(fx, 'capture.pcap'), '--brokers', brokers(), '--topic', `${t}.packets`, '--partitions', '2'], { encoding: 'utf8', env });
      expect(p1.status, p1.stderr).toBe(0);
      const p2 = spawnSync(process.execPath, [cli, 'publish', 'keylog', join(fx, 'keys.log'), '--brokers', brokers(), '--topic', `${t}.secrets`], { encoding: 'utf8', env });
      expect(p2.status, p2.stderr).toBe(0);
      expect(p2.stderr).toContain('published 5 key-log lines');
      const cfgFile = join(dir, 'run.json');
      writeFileSync(cfgFile, JSON.stringify({ eventsTopic: `${t}.events`, groupId: `${t}.group`, workers: 2, statsInterval: 0, maxCpu: 0, maxMemory: 0 }));
      const eventsFile = join(dir, 'events.ndjson');
      const child = spawn(process.execPath, [cli, 'run', '--config', cfgFile, '--out', eventsFile], { env, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.on('data', (d) => (out += d));
      child.stderr.on('data', (d) => (err += d));
      const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
      const admin = await client().admin();
      try {
        await until('run consumed and committed everything', async () => (await admin.lag(`${t}.group`, `${t}.packets`).catch(() => 1)) === 0, 90_000);
      } finally {
        await admin.close();
      }
      child.kill('SIGTERM');
      const code = await Promise.race([exited, new Promise<string>((r) => setTimeout(() => r('timeout'), 60_000))]);
      if (code === 'timeout') child.kill('SIGKILL');
      expect(code, err).toBe(0);
      expect(err).toMatch(/tlsdecrypt: 1 records, 54 packets, 1 TCP flows, 1 TLS sessions \(decrypted 1\)/);
      expect(out).toBe(''); // --out takes the events copy instead of stdout
      const lines = readFileSync(eventsFile, 'utf8').split('\n').filter(Boolean);
      expect(lines.length).toBeGreaterThan(0);
      const fromTopic = await readAll(client(), `${t}.events`);
      expect(fromTopic.map((r) => JSON.parse(r.value!.toString())['event']['id']).sort()).toEqual(lines.map((l) => JSON.parse(l).event.id).sort());
      // key material never logged
      for (const l of (await import('node:fs')).readFileSync(join(fx, 'keys.log'), 'utf8').split('\n').filter(Boolean)) {
        expect(err).not.toContain(l.split(' ')[2]);
      }
    },
  );
});
