import { describe, expect, it } from 'vitest';
import { RecentEvents, eventQueryFromParams } from '../../src/ops/eventLog.js';

const ev = (i: number, o: Record<string, unknown> = {}) => JSON.stringify({ event: { id: `e${i}`, dataset: i % 2 ? 'http' : 'tls.session' }, destination: { ip: `10.0.0.${i % 3}`, port: 443 }, ...(i % 4 === 0 ? { tags: ['Decryption Detection'] } : {}), ...o });

describe('RecentEvents (the log view ring)', () => {
  it('keeps the newest `capacity` events, newest first, and counts what fell out', () => {
    const r = new RecentEvents(5);
    r.add([1, 2, 3].map((i) => ev(i)));
    r.add([4, 5, 6, 7].map((i) => ev(i)));
    const a = r.query();
    expect(a).toMatchObject({ capacity: 5, held: 5, seen: 7, matched: 5 });
    expect(a.events.map((e) => (e.event as { id: string }).id)).toEqual(['e7', 'e6', 'e5', 'e4', 'e3']);
    expect(r.query({ limit: 2 }).events).toHaveLength(2);
    expect(r.query({ limit: 2 }).matched).toBe(5);
  });

  it('filters: tag, dataset, server (ip, ip:port, SNI), text; holds nothing at capacity 0', () => {
    const r = new RecentEvents(100);
    r.add(Array.from({ length: 12 }, (_, i) => ev(i + 1, i === 4 ? { tls: { client: { server_name: 'Mail.Example.org' } }, note: 'Needle' } : {})));
    const idsOf = (q: Parameters<RecentEvents['query']>[0]) => r.query(q).events.map((e) => (e.event as { id: string }).id);
    expect(idsOf({ decrypted: true })).toEqual(['e12', 'e8', 'e4']);
    expect(idsOf({ dataset: 'tls.session', decrypted: true })).toEqual(['e12', 'e8', 'e4']);
    expect(idsOf({ dataset: 'http' })).toEqual(['e11', 'e9', 'e7', 'e5', 'e3', 'e1']);
    expect(idsOf({ server: '10.0.0.2:443' })).toEqual(['e11', 'e8', 'e5', 'e2']);
    expect(idsOf({ server: 'mail.example' })).toEqual(['e5']);
    expect(idsOf({ text: 'needle' })).toEqual(['e5']);
    const none = new RecentEvents(0);
    none.add([ev(1)]);
    expect(none.query()).toMatchObject({ held: 0, seen: 1, events: [] });
  });

  it('reads its query from /api/events parameters', () => {
    expect(eventQueryFromParams(new URLSearchParams('decrypted=1&dataset=http&server=10.0.0.1&q=x&limit=20'))).toEqual({ decrypted: true, dataset: 'http', server: '10.0.0.1', text: 'x', limit: 20 });
    expect(eventQueryFromParams(new URLSearchParams('decrypted=0&limit=-3&dataset='))).toEqual({ decrypted: false, dataset: undefined, server: undefined, text: undefined, limit: undefined });
  });
});
