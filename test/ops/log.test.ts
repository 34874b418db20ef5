import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { CENSOR, Logger, METADATA_NAMES, REDACT_NAMES, REDACT_PATHS, isRedactedName, parseLogLevel } from '../../src/ops/log.js';

const SECRET = '4f1e2d3c4b5a69788796a5b4c3d2e1f0a1b2c3d4e5f60718293a4b5c6d7e8f90';
const SECRET_BYTES = Buffer.from(SECRET, 'hex');
/** Every rendering of the key material that must never reach a log line. */
const FORMS = [SECRET, SECRET.toUpperCase(), SECRET_BYTES.toString('base64'), SECRET_BYTES.toString('base64url'), SECRET_BYTES.toString('latin1'), JSON.stringify([...SECRET_BYTES]).slice(1, 40)];

function capture(level: 'debug' | 'info' = 'debug'): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  return { log: new Logger({ write: (l) => lines.push(l), level, name: 'test' }), lines };
}

function expectNoKeyMaterial(text: string): void {
  for (const f of FORMS) expect(text).not.toContain(f);
}

/** `{ [name]: value }` nested `depth` objects deep: { a0: { a1: { ... { [name]: value } } } }. */
function nest(name: string, value: unknown, depth: number): Record<string, unknown> {
  let o: Record<string, unknown> = { [name]: value };
  for (let d = depth - 1; d >= 0; d--) o = { [`a${d}`]: o };
  return o;
}

describe('the pino-based logger', () => {
  it('writes each record as one line of valid JSON with level, time and message', () => {
    const { log, lines } = capture('info');
    log.debug('hidden');
    log.info('hello', { port: 8443, nested: { ok: true } });
    log.warn('careful');
    log.error('bad', { error: new TypeError('boom') });
    expect(lines).toHaveLength(3);
    for (const l of lines) {
      expect(l.endsWith('\n') && !l.slice(0, -1).includes('\n')).toBe(true);
      const rec = JSON.parse(l);
      expect(Object.keys(rec).slice(0, 4)).toEqual(['log.level', '@timestamp', 'log.logger', 'message']);
      expect(new Date(rec['@timestamp']).toISOString()).toBe(rec['@timestamp']);
      expect(Math.abs(Date.parse(rec['@timestamp']) - Date.now())).toBeLessThan(60_000);
    }
    expect(lines.map((l) => JSON.parse(l)['log.level'])).toEqual(['info', 'warn', 'error']);
    expect(JSON.parse(lines[0])).toMatchObject({ message: 'hello', port: 8443, nested: { ok: true }, 'log.logger': 'test' });
    expect(JSON.parse(lines[2]).error).toEqual({ message: 'boom', type: 'TypeError' });
    // no pino defaults (pid, hostname, numeric level, time, msg)
    for (const k of ['pid', 'hostname', 'level', 'time', 'msg']) expect(JSON.parse(lines[0])).not.toHaveProperty(k);
  });

  it('keeps levels, children and the record fields under its control', () => {
    const { log, lines } = capture('info');
    expect(log.level).toBe('info');
    expect(log.enabled('debug')).toBe(false);
    const child = log.child('tlsdecrypt.child');
    log.setLevel('debug');
    expect(log.enabled('debug')).toBe(true);
    child.debug('not yet'); // the child keeps the level it was made with
    child.info('from the child', { message: 'spoofed', '@timestamp': 'x', 'log.level': 'error', 'log.logger': 'y', 'log.redacted': [] });
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0])).toMatchObject({ 'log.level': 'info', 'log.logger': 'tlsdecrypt.child', message: 'from the child' });
    expect(JSON.parse(lines[0])).not.toHaveProperty('log.redacted');
    expect(lines[0].match(/"log\.logger"/g)).toHaveLength(1);
    const m = 'x'.repeat(10_000);
    log.info(m, { long: m });
    const rec = JSON.parse(lines[1]);
    expect(rec.message.length).toBeLessThan(4100);
    expect(rec.long.length).toBeLessThan(4100);
  });

  it('never writes key material given under a key-material name, at any depth, in arrays, maps or as bytes', () => {
    const names = ['secret', 'tlsSecret', 'client_handshake_traffic_secret', 'SERVER_TRAFFIC_SECRET_0', 'key', 'privateKey', 'private_key', 'rsa-key', 'password', 'saslPassword', 'passwd', 'token', 'api_token', 'sasl', 'premaster', 'preMasterSecret', 'master', 'masterSecret', 'psk', 'credentials'];
    for (const name of names) {
      for (const depth of [0, 1, 3, 5]) {
        for (const value of [SECRET, SECRET_BYTES, { bytes: SECRET_BYTES, hex: SECRET }, [SECRET]]) {
          const { log, lines } = capture();
          log.warn('careful', { topic: 'tlsdecrypt.secrets', ...nest(name, value, depth) });
          expect(lines, `${name} at depth ${depth}`).toHaveLength(1);
          expectNoKeyMaterial(lines[0]);
          const rec = JSON.parse(lines[0]);
          expect(rec.topic).toBe('tlsdecrypt.secrets');
          const path = [...Array.from({ length: depth }, (_, d) => `a${d}`), name].join('.');
          expect(rec['log.redacted'], `${name} at depth ${depth}`).toEqual([path]);
          let o = rec;
          for (let d = 0; d < depth; d++) o = o[`a${d}`];
          expect(o[name]).toBe(CENSOR);
        }
      }
    }
    // inside arrays and maps, and as a raw pino call
    const { log, lines } = capture();
    log.info('lists', { sessions: [{ id: 1, keys: { clientRandom: 'ab', secret: SECRET } }], store: new Map([['master', SECRET]]) });
    log.pino.info({ conf: { sasl: { mechanism: 'plain', password: SECRET } }, tls: { privateKey: SECRET } }, 'raw pino');
    log.pino.child({ session: { clientRandom: 'ab', masterSecret: SECRET }, token: SECRET }).info('child bindings'); // pino redact paths only
    expectNoKeyMaterial(lines.join(''));
    expect(JSON.parse(lines[0])['log.redacted']).toEqual(['sessions[0].keys', 'store.master']);
    expect(JSON.parse(lines[1])).toMatchObject({ message: 'raw pino', conf: { sasl: CENSOR }, tls: { privateKey: CENSOR } });
    expect(JSON.parse(lines[2])).toMatchObject({ message: 'child bindings', session: { clientRandom: 'ab', masterSecret: CENSOR }, token: CENSOR });
  });

  it('writes bytes only as their length, whatever the field name', () => {
    const { log, lines } = capture();
    log.info('bytes', { blob: SECRET_BYTES, view: new Uint8Array(SECRET_BYTES), ab: SECRET_BYTES.buffer.slice(SECRET_BYTES.byteOffset, SECRET_BYTES.byteOffset + 32), deep: { list: [SECRET_BYTES] }, dv: new DataView(new ArrayBuffer(7)) });
    expectNoKeyMaterial(lines[0]);
    expect(JSON.parse(lines[0])).toMatchObject({ blob: '[32 bytes]', view: '[32 bytes]', ab: '[32 bytes]', deep: { list: ['[32 bytes]'] }, dv: '[7 bytes]' });
  });

  it('gives pino redact paths for every key-material name, each also refused by the name guard', () => {
    for (const n of REDACT_NAMES) {
      expect(isRedactedName(n), n).toBe(true);
      expect(REDACT_PATHS).toContain(n);
      expect(REDACT_PATHS).toContain(`*.*.${n}`);
    }
    for (const n of ['secret', 'key', 'privateKey', 'password', 'passwd', 'token', 'sasl', 'premaster', 'master']) expect(REDACT_NAMES).toContain(n);
    for (const n of ['topic', 'port', 'bytes', 'monkey', 'keyboard', 'message']) expect(isRedactedName(n), n).toBe(false);
  });

  it('keeps the listed metadata about key material (topic names, counters)', () => {
    const { log, lines } = capture();
    log.info('consuming', { secretsTopic: 'tlsdecrypt.secrets', secretRecords: 3, secretLines: 7, badRecords: { kafka_secrets_record_bad: 1 }, anomalies: { keylog_malformed_line: 2 }, secretsTopics: SECRET, secretRecord: SECRET });
    const rec = JSON.parse(lines[0]);
    expect(rec).toMatchObject({ secretsTopic: 'tlsdecrypt.secrets', secretRecords: 3, secretLines: 7, badRecords: { kafka_secrets_record_bad: 1 }, anomalies: { keylog_malformed_line: 2 } });
    expect(rec['log.redacted']).toEqual(['secretsTopics', 'secretRecord']); // exact names only
    expectNoKeyMaterial(lines[0]);
    for (const n of METADATA_NAMES) expect(REDACT_NAMES).not.toContain(n);
  });

  it('parses level names', () => {
    expect(parseLogLevel('debug')).toBe('debug');
    expect(parseLogLevel(' WARN ')).toBe('warn');
    expect(parseLogLevel('verbose')).toBeUndefined();
    expect(parseLogLevel(undefined)).toBeUndefined();
  });

  it('writes to stderr synchronously (nothing lost at exit) at the TLSDECRYPT_LOG_LEVEL level', () => {
    const mod = fileURLToPath(new URL('../../dist/src/ops/log.js', import.meta.url));
    const code = `import { opsLog } from ${JSON.stringify(mod)}; for (let i = 0; i < 500; i++) opsLog.debug('line ' + i, { i, secret: ${JSON.stringify(SECRET)} }); opsLog.info('last'); process.exit(0);`;
    const run = (env: Record<string, string>) => spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8', env: { ...process.env, ...env } });
    const debug = run({ TLSDECRYPT_LOG_LEVEL: 'debug' });
    expect(debug.status, debug.stderr).toBe(0);
    expect(debug.stdout).toBe('');
    const lines = debug.stderr.trimEnd().split('\n');
    expect(lines).toHaveLength(501);
    expect(lines.map((l) => JSON.parse(l).i)).toEqual([...Array.from({ length: 500 }, (_, i) => i), undefined]);
    expect(JSON.parse(lines[0])).toMatchObject({ 'log.level': 'debug', 'log.logger': 'tlsdecrypt.ops', message: 'line 0', secret: CENSOR });
    expectNoKeyMaterial(debug.stderr);
    for (const env of [{ TLSDECRYPT_LOG_LEVEL: 'nonsense' }, { TLSDECRYPT_LOG_LEVEL: '' }]) {
      const r = run(env);
      expect(r.stderr.trimEnd().split('\n').map((l) => JSON.parse(l).message)).toEqual(['last']);
    }
  });
});
