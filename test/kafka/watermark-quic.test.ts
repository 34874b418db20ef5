/**
 * QUIC connections and `run`'s replay watermark (src/kafka/watermark.ts), without a broker: a QUIC
 * path is stamped like a TCP flow (its client Initial's record holds the commit back while it is
 * open), and a connection whose partition moves to another member emits nothing more here (the new
 * owner rebuilds it from the re-read). The crash case over random batch boundaries is in
 * watermark.property.test.ts (every fixtures/quic capture); the planned leave on the real broker in
 * replay-window.test.ts.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CaptureReader } from '../../src/capture/index.js';
import { ShardCore } from '../../src/kafka/shards.js';
import type { RawPacket } from '../../src/types.js';
import { REPO } from './helpers.js';

const FX = join(REPO, 'fixtures/quic/aes128-download-keyupdate');

function packets(): RawPacket[] {
  const out: RawPacket[] = [];
  const r = new CaptureReader({ packet: (p) => out.push({ ...p, data: Buffer.from(p.data), ts: { ...p.ts } }), secrets: () => {}, anomaly: () => {} });
  r.push(readFileSync(join(FX, 'capture.pcap')));
  r.end();
  return out;
}

function core(): ShardCore {
  return new ShardCore({ keylogs: [join(FX, 'keys.log')], rsaKeys: [], engine: {}, watermark: { windowSec: 120, maxBytes: 1 << 30 } });
}

const datasets = (values: string[]): string[] => values.map((v) => JSON.parse(v).event.dataset as string);

describe('replay watermark and QUIC', () => {
  it('an open QUIC connection holds its partition at the record of its first packet; once it closes the commit may pass', () => {
    const ps = packets();
    const c = core();
    c.watermark.at(0, 0, 0);
    c.packet(ps[0]);
    for (let i = 1; i < 60; i++) {
      c.watermark.at(0, i, i * 100);
      c.packet(ps[i]);
    }
    c.tick(ps[59].ts);
    expect(c.take().low).toEqual({ 0: 0 });
    for (let i = 60; i < ps.length; i++) {
      c.watermark.at(0, i, i * 100);
      c.packet(ps[i]);
    }
    c.finish();
    const out = c.take();
    expect(datasets(out.values)).toContain('tls.session');
    expect(out.low).toEqual({});
  });

  it('a revoked partition\'s QUIC connection emits nothing more: no truncated tls.session at the end', () => {
    const ps = packets();
    const whole = core();
    for (const [i, p] of ps.entries()) {
      whole.watermark.at(0, i, i * 100);
      whole.packet(p);
    }
    whole.finish();
    expect(datasets(whole.take().values).filter((d) => d === 'tls.session')).toHaveLength(1);

    const c = core();
    for (let i = 0; i < 60; i++) {
      c.watermark.at(0, i, i * 100);
      c.packet(ps[i]);
    }
    c.tick(ps[59].ts);
    const before = datasets(c.take().values);
    c.revoke([0]);
    c.finish();
    const after = datasets(c.take().values);
    expect(before).not.toContain('tls.session');
    expect(after).toEqual([]);
  });
});
