/**
 * Golden tests against an independent oracle: every fixture under fixtures/https was captured
 * from real clients and servers, and its oracle.json was produced by tshark with the same key
 * material (scripts/fixtures/oracle.py). Our events must agree with it.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { endpoint, field, replayFile } from '../helpers/replay.js';
import type { EcsEvent } from '../../src/events/builder.js';

const ROOT = 'fixtures/https';

interface Oracle {
  tls: {
    client: string;
    server: string;
    version?: string;
    cipher?: string;
    sni?: string;
    alpn?: string;
    resumed?: boolean;
    /** the client's leaf certificate (mutual TLS, post-handshake auth); absent: the client sent none */
    client_cert_serial?: string;
    server_cert_serial?: string;
  }[];
  http: {
    client: string;
    server: string;
    version?: string;
    method?: string;
    host?: string;
    path?: string;
    status?: number;
    response_body_bytes?: number;
    content_type?: string;
    /** trailer fields after the body (chunked HTTP/1.1, a last HEADERS frame in HTTP/2), names in lower case */
    response_trailers?: Record<string, string>;
  }[];
}
interface Meta {
  description?: string;
  expect?: { status?: string; rsa_key?: string; rsa_password?: string; [k: string]: unknown };
  password?: string;
}

function normEndpoint(s: string): string {
  // oracle may write IPv6 as [addr]:port or addr:port
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(s);
  if (!m) return s;
  return m[1].includes(':') ? `[${m[1]}]:${m[2]}` : `${m[1]}:${m[2]}`;
}

const fixtures = existsSync(ROOT)
  ? readdirSync(ROOT, { withFileTypes: true })
      .filter((d) => d.isDirectory() && existsSync(join(ROOT, d.name, 'oracle.json')))
      .map((d) => d.name)
      .sort()
  : [];

function keysFor(dir: string): { keylogs: string[]; rsaKeys: { path: string; password?: string }[] } {
  const keylogs = existsSync(join(dir, 'keys.log')) ? [join(dir, 'keys.log')] : [];
  const rsaKeys = existsSync(join(dir, 'server.key')) && keylogs.length === 0 ? [{ path: join(dir, 'server.key') }] : [];
  return { keylogs, rsaKeys };
}

function captureOf(dir: string): string {
  for (const f of ['capture.pcap', 'capture.pcapng']) if (existsSync(join(dir, f))) return join(dir, f);
  throw new Error(`no capture in ${dir}`);
}

describe('fixtures compared with the tshark oracle', () => {
  it('has fixtures to compare', () => {
    expect(fixtures.length).toBeGreaterThanOrEqual(10);
  });

  for (const name of fixtures) {
    it(name, () => {
      const dir = join(ROOT, name);
      const oracle = JSON.parse(readFileSync(join(dir, 'oracle.json'), 'utf8')) as Oracle;
      const meta = (existsSync(join(dir, 'meta.json')) ? JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8')) : {}) as Meta;
      const { events } = replayFile(captureOf(dir), keysFor(dir));
      const sessions = events.filter((e) => e.event.dataset === 'tls.session');
      const http = events.filter((e) => e.event.dataset === 'http');

      // Every TLS connection tshark saw is one tls.session event with the same handshake facts.
      for (const o of oracle.tls) {
        const s = sessions.find((e) => endpoint(e, 'source') === normEndpoint(o.client) && endpoint(e, 'destination') === normEndpoint(o.server));
        expect(s, `tls.session for ${o.client} -> ${o.server}`).toBeDefined();
        if (o.version) expect(field(s, 'tls.version')).toBe(o.version);
        if (o.cipher) expect(field(s, 'tls.cipher')).toBe(o.cipher);
        if (o.sni) expect(field(s, 'tls.client.server_name')).toBe(o.sni);
        if (o.alpn) expect(field(s, 'tls.next_protocol')).toBe(o.alpn);
        if (o.resumed !== undefined) expect(field(s, 'tls.resumed')).toBe(o.resumed);
        // A client certificate is reported like the server's (tls.client.x509.*), and only when sent.
        if (o.client_cert_serial) expect(serial(field(s, 'tls.client.x509.serial_number'))).toBe(serial(o.client_cert_serial));
        else expect(field(s, 'tls.client.x509')).toBeUndefined();
        if (o.server_cert_serial) expect(serial(field(s, 'tls.server.x509.serial_number'))).toBe(serial(o.server_cert_serial));
      }
      // tshark lists no TLS session whose handshake it never saw; we still report the connection
      // (decryption.status missing_handshake), so only then may we have more sessions than it.
      if (meta.expect?.status === 'missing_handshake') expect(sessions.length).toBeGreaterThanOrEqual(oracle.tls.length);
      else expect(sessions.length).toBe(oracle.tls.length);

      // The HTTP requests are the same multiset as tshark's.
      const ours = http.map((e) => requestKey(e)).sort();
      // clear text before a tunnel's TLS (an HTTP proxy's CONNECT) is not reported: meta.json names it
      const notReported = new Set((meta.expect?.oracle_http_not_reported as string[] | undefined) ?? []);
      oracle.http = oracle.http.filter((o) => !notReported.has(o.method ?? ''));
      const theirs = oracle.http
        .map((o) => JSON.stringify([normEndpoint(o.client), o.method ?? null, hostOnly(o.host), o.path ?? null, o.version ?? null]))
        .sort();
      expect(ours).toEqual(theirs);
      // Where tshark saw the response, ours agrees on status, size and type. (tshark shows no
      // response whose body is incomplete, e.g. in a capture cut mid-record; we report what came.)
      // http.response.body.bytes is the message body as sent (after removing chunked framing,
      // before content decoding: Content-Length semantics, as Packetbeat fills this ECS field);
      // tshark's file_data is decompressed, so gzip fixtures list the encoded sizes in meta.json.
      const encoded = (meta.expect?.response_body_bytes_encoded as number[] | undefined) ?? [];
      for (const [i, o] of oracle.http.entries()) {
        if (o.status === undefined || o.status === null) continue;
        const match = http.find(
          (e) =>
            endpoint(e, 'source') === normEndpoint(o.client) &&
            field(e, 'url.original') === o.path &&
            field(e, 'http.request.method') === o.method &&
            field(e, 'http.response.status_code') === o.status,
        );
        expect(match, `response ${o.status} to ${o.method} ${o.path}`).toBeDefined();
        const bodyBytes = encoded[i] ?? o.response_body_bytes;
        if (bodyBytes !== undefined && bodyBytes !== null) {
          expect(field(match, 'http.response.body.bytes'), `body bytes of ${o.method} ${o.path}`).toBe(bodyBytes);
        }
        // http.response.mime_type is the media type without its parameters (charset=...)
        if (o.response_trailers) expect(field(match, 'http.response.trailers'), `trailers of ${o.method} ${o.path}`).toEqual(o.response_trailers);
        if (o.content_type) expect(field(match, 'http.response.mime_type')).toBe(o.content_type.split(';')[0].trim().toLowerCase());
      }
      // Request body sizes tshark does not list: the client's own (meta.json), where given.
      for (const [path, bytes] of Object.entries((meta.expect?.request_body_bytes ?? {}) as Record<string, number>)) {
        const ev = http.find((e) => field(e, 'url.original') === path);
        expect(field(ev, 'http.request.body.bytes'), `request body bytes of ${path}`).toBe(bytes);
      }
      const responses = oracle.http.filter((o) => o.status !== undefined && o.status !== null).length;
      expect(http.filter((e) => field(e, 'http.response.status_code') !== undefined).length).toBeGreaterThanOrEqual(responses);

      const status = meta.expect?.status ?? (oracle.http.length ? 'decrypted' : undefined);
      const byClient = (meta.expect?.status_by_client ?? {}) as Record<string, string>;
      if (status) {
        for (const s of sessions) {
          expect(field(s, 'decryption.status'), endpoint(s, 'source')).toBe(byClient[endpoint(s, 'source')] ?? status);
        }
      }
      for (const e of http) expect(e.tags).toContain('Decryption Detection');
    });
  }
});

/** Host header / :authority without its port (url.domain; the port goes to url.port). */
function hostOnly(h: string | undefined): string | null {
  if (h === undefined || h === null) return null;
  const m = /^(\[[^\]]*\]|[^:]*)(?::\d+)?$/.exec(h);
  return m ? m[1].replace(/^\[|\]$/g, '') : h;
}

/** A certificate serial number as hex digits without a DER sign byte, upper case. */
function serial(v: unknown): string | undefined {
  return typeof v === 'string' ? v.replace(/:/g, '').toUpperCase().replace(/^(00)+(?=.)/, '') : undefined;
}

function requestKey(e: EcsEvent): string {
  return JSON.stringify([
    endpoint(e, 'source'),
    field(e, 'http.request.method') ?? null,
    field(e, 'url.domain') ?? null,
    field(e, 'url.original') ?? null,
    field(e, 'http.version') ?? null,
  ]);
}

describe('RSA key exchange from the server key alone, in every key format', () => {
  const dir = join(ROOT, 'tls12-rsa-aes128gcm-http11');
  const capture = join(dir, 'capture.pcap');
  const baseline = replayFile(capture, { rsaKeys: [{ path: join(dir, 'server.key') }] }).events.filter((e) => e.event.dataset === 'http');

  it('decrypts with the PEM key', () => {
    expect(baseline.length).toBeGreaterThan(0);
  });

  for (const [file, password] of [
    ['server.pkcs8.pem', undefined],
    ['server.enc.pem', 'test-password'],
    ['server.p12', 'test-password'],
    ['server.legacy.p12', 'test-password'],
  ] as const) {
    it(`gives the same events with ${file}`, () => {
      const { events } = replayFile(capture, { rsaKeys: [{ path: join(dir, file), password }] });
      expect(events.filter((e) => e.event.dataset === 'http')).toEqual(baseline);
      expect(field(events.find((e) => e.event.dataset === 'tls.session'), 'decryption.status')).toBe('decrypted');
    });
  }

  it('gives the same events with the client key log instead of the key', () => {
    const { events } = replayFile(capture, { keylogs: [join(dir, 'keys.log.reference')] });
    expect(events.filter((e) => e.event.dataset === 'http')).toEqual(baseline);
  });

  it('reports no_key with neither', () => {
    const { events } = replayFile(capture);
    expect(field(events.find((e) => e.event.dataset === 'tls.session'), 'decryption.status')).toBe('no_key');
    expect(events.filter((e) => e.event.dataset === 'http')).toHaveLength(0);
  });
});
