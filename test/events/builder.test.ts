import { describe, expect, it } from 'vitest';
import { buildEvent, eventId, isoTimestamp } from '../../src/events/builder.js';
import type { FlowInfo } from '../../src/types.js';

const flow: FlowInfo = {
  id: 1, clientIp: '10.0.0.1', clientPort: 50000, serverIp: '10.0.0.2', serverPort: 443, ipVersion: 4,
  start: { sec: 1_700_000_000, nsec: 5 }, rolesFromHandshake: true, communityId: '1:abc=',
};

describe('ECS event builder', () => {
  it('formats capture time with microseconds', () => {
    expect(isoTimestamp({ sec: 1_700_000_000, nsec: 123_456_789 })).toBe('2023-11-14T22:13:20.123456Z');
    expect(isoTimestamp({ sec: 0, nsec: 0 })).toBe('1970-01-01T00:00:00.000000Z');
  });

  it('gives deterministic ids that differ per ordinal, dataset and flow start', () => {
    expect(eventId(flow, 'http', 0)).toBe(eventId({ ...flow }, 'http', 0));
    expect(eventId(flow, 'http', 0)).not.toBe(eventId(flow, 'http', 1));
    expect(eventId(flow, 'http', 0)).not.toBe(eventId(flow, 'tls.session', 0));
    expect(eventId(flow, 'http', 0)).not.toBe(eventId({ ...flow, start: { sec: 1_700_000_001, nsec: 5 } }, 'http', 0));
  });

  it('puts the TCP client in source, TLS facts in tls.*, the tag on decrypted content', () => {
    const ev = buildEvent(
      flow,
      { version: '1.3', cipher: 'TLS_AES_128_GCM_SHA256', sni: 'a.test', alpn: 'h2', resumed: false, established: true },
      'http',
      { http: { request: { method: 'GET' } }, url: { domain: 'a.test' } },
      { sec: 1_700_000_000, nsec: 0 },
      true,
      0,
    ) as Record<string, any>;
    expect(ev.source).toEqual({ ip: '10.0.0.1', port: 50000 });
    expect(ev.destination).toEqual({ ip: '10.0.0.2', port: 443 });
    expect(ev.network).toMatchObject({ transport: 'tcp', protocol: 'http', community_id: '1:abc=' });
    expect(ev.tls).toMatchObject({ version: '1.3', cipher: 'TLS_AES_128_GCM_SHA256', client: { server_name: 'a.test' }, next_protocol: 'h2', resumed: false });
    expect(ev.http.request.method).toBe('GET');
    expect(ev.event).toMatchObject({ kind: 'event', dataset: 'http' });
    expect(ev.tags).toEqual(['Decryption Detection']);
  });

  it('does not tag clear-text content', () => {
    const ev = buildEvent(flow, undefined, 'smtp', {}, flow.start, false, 0);
    expect(ev.tags).toBeUndefined();
  });
});
