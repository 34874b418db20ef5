import { describe, expect, it } from 'vitest';
import { VolumeHistory } from '../../src/ops/history.js';
import { Logger, isRedactedName } from '../../src/ops/log.js';

describe('VolumeHistory', () => {
  it('keeps 10 s points for an hour and hourly points for 7 days, as increases per interval', () => {
    const h = new VolumeHistory();
    const t0 = Date.UTC(2026, 10, 22, 0, 0, 0);
    let total = 0;
    // 2 hours, one sample every 5 s, 100 bytes per sample.
    for (let s = 0; s <= 7200; s += 5) {
      h.record(t0 + s * 1000, total);
      total += 100;
    }
    const { fine, coarse } = h.snapshot(t0 + 7200_000);
    expect(fine.intervalSec).toBe(10);
    expect(fine.points.length).toBe(361); // 360 full + the one in progress
    expect(fine.points[0].t).toBe(t0 + 3600_000 + 10_000);
    expect(fine.points.slice(0, -1).every((p) => p.bytes === 200)).toBe(true);
    expect(coarse.intervalSec).toBe(3600);
    expect(coarse.points.map((p) => p.bytes)).toEqual([71_900, 72_000, 100]);
    expect(coarse.points[0].t).toBe(t0 + 3600_000);
  });

  it('fills idle intervals with zeros and caps at a week', () => {
    const h = new VolumeHistory();
    const t0 = Date.UTC(2026, 0, 1);
    h.record(t0, 0);
    h.record(t0 + 1000, 500);
    h.record(t0 + 60_000, 600); // 5 silent 10 s intervals in between
    const fine = h.snapshot().fine.points;
    expect(fine.map((p) => p.bytes)).toEqual([500, 0, 0, 0, 0, 0, 100]);
    h.record(t0 + 30 * 86_400_000, 700);
    const coarse = h.snapshot().coarse.points;
    expect(coarse.length).toBe(169);
    expect(coarse.at(-1)!.bytes).toBe(100);
  });
});

describe('Logger', () => {
  it('writes one JSON object per line with levels', () => {
    const lines: string[] = [];
    const log = new Logger({ write: (l) => lines.push(l), level: 'info', now: () => Date.UTC(2026, 0, 1), name: 'test' });
    log.debug('hidden');
    log.info('hello', { n: 1, nested: { ok: true } });
    log.error('bad', { error: new Error('boom') });
    expect(lines.length).toBe(2);
    expect(lines.every((l) => l.endsWith('\n') && !l.slice(0, -1).includes('\n'))).toBe(true);
    expect(JSON.parse(lines[0])).toEqual({ '@timestamp': '2026-01-01T00:00:00.000Z', 'log.level': 'info', 'log.logger': 'test', message: 'hello', n: 1, nested: { ok: true } });
    expect(JSON.parse(lines[1])).toMatchObject({ 'log.level': 'error', error: { message: 'boom' } });
  });

  it('refuses fields named like key material or credentials, at any depth, and never writes buffers', () => {
    const lines: string[] = [];
    const log = new Logger({ write: (l) => lines.push(l) });
    const secret = '4f1e2d3c4b5a69788796a5b4c3d2e1f0';
    log.warn('careful', {
      secret,
      clientSecret: secret,
      masterSecret: secret,
      sasl: { password: secret },
      conf: { tls: { privateKey: secret, key: secret }, saslPassword: secret, api_token: secret },
      blob: Buffer.from(secret, 'hex'),
      topic: 'tlsdecrypt.packets',
    });
    const line = lines[0];
    expect(line).not.toContain(secret);
    expect(line).not.toContain(Buffer.from(secret, 'hex').toString('base64'));
    const rec = JSON.parse(line);
    expect(rec.topic).toBe('tlsdecrypt.packets');
    expect(rec.blob).toBe('[16 bytes]');
    expect(rec['log.redacted']).toEqual(expect.arrayContaining(['secret', 'clientSecret', 'masterSecret', 'sasl', 'conf.tls.privateKey', 'conf.tls.key', 'conf.saslPassword', 'conf.api_token']));
    for (const n of ['key', 'keys', 'sslKeyLogFile', 'rsa-key', 'TLS_SECRET', 'passwd', 'premaster']) expect(isRedactedName(n), n).toBe(true);
    for (const n of ['monkey', 'keyboard', 'topic', 'status', 'bytes']) expect(isRedactedName(n), n).toBe(false);
  });
});
