import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { FtpSession, parseEprt, parseEpsv, parsePasv, REDACTED } from '../../src/analyzers/ftp/session.js';
import { DataChannelRegistry, canonicalIp } from '../../src/analyzers/ftp/dataChannels.js';
import { Dir, type FlowInfo, type Timestamp } from '../../src/types.js';
import { Recorder, c, sv, get, ts } from '../smtp/helpers.js';
import { createHash } from 'node:crypto';

let nextId = 1;
function flow(clientIp: string, clientPort: number, serverIp: string, serverPort: number, start: Timestamp = ts()): FlowInfo {
  return { id: nextId++, clientIp, clientPort, serverIp, serverPort, ipVersion: 4, start, rolesFromHandshake: true, communityId: 'x' };
}

const CTRL = () => flow('10.0.0.1', 40000, '10.0.0.2', 21);

function setup(hooks?: ConstructorParameters<typeof FtpSession>[4]) {
  const rec = new Recorder();
  const reg = new DataChannelRegistry(rec);
  const f = CTRL();
  const s = new FtpSession(f, rec, rec, reg, hooks);
  return { rec, reg, s, f };
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('FTP reply/command parsers', () => {
  it('parses PASV, EPSV and EPRT', () => {
    expect(parsePasv('Entering Passive Mode (10,78,0,2,156,64).')).toEqual({ ip: '10.78.0.2', port: 40000 });
    expect(parsePasv('=10,0,0,1,0,21')).toEqual({ ip: '10.0.0.1', port: 21 });
    expect(parsePasv('(300,1,1,1,1,1)')).toBeUndefined();
    expect(parseEpsv('Entering Extended Passive Mode (|||40038|)')).toBe(40038);
    expect(parseEpsv('(!!!6446!)')).toBe(6446);
    expect(parseEpsv('(|||0|)')).toBeUndefined();
    expect(parseEprt('|1|10.0.0.1|6275|')).toEqual({ ip: '10.0.0.1', port: 6275 });
    expect(parseEprt('|2|fd00::1|6275|')).toEqual({ ip: 'fd00::1', port: 6275 });
    expect(parseEprt('|3|x|1|')).toBeUndefined();
    expect(canonicalIp('FD00:0:0::1')).toBe('fd00::1');
  });
  it('parsers never throw', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 100 }), (s) => {
        parsePasv(s);
        parseEpsv(s);
        parseEprt(s);
        canonicalIp(s);
      }),
      { numRuns: 500 },
    );
  });
});

describe('FTP control session', () => {
  it('pairs commands with final replies, joins multi-line replies and redacts PASS', () => {
    const { rec, s } = setup();
    sv(s, '220-Welcome', ' to the', '220 server');
    c(s, 'USER bob');
    sv(s, '331 Please specify the password.');
    c(s, 'PASS hunter2');
    sv(s, '230 Login successful.');
    c(s, 'FEAT');
    sv(s, '211-Features:', ' EPSV', ' MLST size*;', '211 End');
    s.onClose(ts());
    const cmds = rec.events.map((e) => [get(e.fields, 'ftp.request.command'), get(e.fields, 'ftp.request.arg'), get(e.fields, 'ftp.response.code')]);
    expect(cmds).toEqual([
      [undefined, undefined, 220],
      ['USER', 'bob', 331],
      ['PASS', REDACTED, 230],
      ['FEAT', undefined, 211],
    ]);
    expect(get(rec.events[0].fields, 'ftp.response.message')).toBe('Welcome\n to the\nserver');
    expect(get(rec.events[3].fields, 'ftp.response.message')).toContain('MLST');
    expect(JSON.stringify(rec.events)).not.toContain('hunter2');
    expect(rec.events.every((e) => !e.decrypted)).toBe(true);
  });

  it('switches on 234 to AUTH TLS with the bytes after the switch point', () => {
    const got: { dir: Dir; data: Buffer }[][] = [];
    const { rec, s } = setup({ startTls: (rest) => void got.push(rest) });
    sv(s, '220 ftp');
    s.onData(Dir.ToServer, Buffer.from('AUTH TLS\r\n\x16\x03\x01'), ts());
    s.onData(Dir.ToClient, Buffer.from('234 Proceed\r\n'), ts());
    expect(got).toHaveLength(1);
    expect(got[0]).toEqual([{ dir: Dir.ToServer, data: Buffer.from([0x16, 3, 1]), ts: expect.anything() }]);
    const tlsRec = new Recorder();
    const d = s.decryptedStream(tlsRec);
    c(d, 'USER anonymous');
    sv(d, '230 ok');
    d.onClose(ts());
    expect(get(rec.events[1].fields, 'ftp.request.command')).toBe('AUTH');
    expect(rec.events[1].decrypted).toBe(false);
    expect(tlsRec.events).toHaveLength(1);
    expect(tlsRec.events[0].decrypted).toBe(true);
    expect(get(tlsRec.events[0].fields, 'ftp.tls')).toBe('explicit');
  });

  it('stays clear when AUTH TLS is refused', () => {
    let switched = false;
    const { rec, s } = setup({ startTls: () => void (switched = true) });
    sv(s, '220 ftp');
    s.onData(Dir.ToServer, Buffer.from('AUTH TLS\r\nUSER a\r\n'), ts());
    sv(s, '530 Please login with USER and PASS.', '331 pw');
    s.onClose(ts());
    expect(switched).toBe(false);
    expect(rec.events.map((e) => get(e.fields, 'ftp.request.command'))).toEqual([undefined, 'AUTH', 'USER']);
  });

  it('takes an unreadable reply line as the reply of the command waiting for it: later replies keep their commands', () => {
    const { rec, s } = setup();
    sv(s, '220 ftp');
    c(s, 'USER a');
    sv(s, '230 ok');
    c(s, 'PWD');
    s.onData(Dir.ToClient, Buffer.from('\xde\xad#garbage&&\r\n', 'latin1'), ts());
    c(s, 'SYST');
    sv(s, '215 UNIX Type: L8');
    c(s, 'NOOP');
    sv(s, '200 ok');
    s.onClose(ts());
    const got = rec.events.slice(1).map((e) => [get(e.fields, 'ftp.request.command'), get(e.fields, 'ftp.response.code') ?? null]);
    expect(got).toEqual([['USER', 230], ['PWD', null], ['SYST', 215], ['NOOP', 200]]);
    expect(get(rec.events[2].fields, 'ftp.response.malformed')).toBe(true);
    expect(rec.anomalies).toEqual({ ftp_reply_malformed: 1 });
  });

  it('reports a data connection reset mid-transfer (final reply 426) as truncated: bytes seen, no file size or hash', () => {
    const { rec, reg, s, f } = setup();
    sv(s, '220 ftp');
    c(s, 'EPSV');
    sv(s, '229 Entering Extended Passive Mode (|||40002|)');
    const claim = reg.claim(flow(f.clientIp, 50001, f.serverIp, 40002), ts())!;
    c(s, 'RETR big.bin');
    sv(s, '150 Opening');
    const part = Buffer.alloc(700, 7);
    claim.channel.onData(Dir.ToClient, part, ts());
    claim.channel.onEnd(Dir.ToClient, 'rst', ts());
    claim.channel.onEnd(Dir.ToServer, 'rst', ts());
    sv(s, '426 Connection closed; transfer aborted.');
    s.onClose(ts());
    const ev = rec.events.find((e) => get(e.fields, 'ftp.request.command') === 'RETR')!;
    expect(get(ev.fields, 'ftp.data.bytes')).toBe(700);
    expect(get(ev.fields, 'ftp.data.sha256')).toBe(sha(part));
    expect(get(ev.fields, 'ftp.data.truncated')).toBe(true);
    expect(get(ev.fields, 'file.size')).toBeUndefined();
    expect(get(ev.fields, 'file.hash')).toBeUndefined();
    expect(rec.anomalies).toEqual({ ftp_data_truncated: 1 });
  });

  it('keeps a transfer whose server resets the data connection after sending everything but confirms it (226) whole', () => {
    const { rec, reg, s, f } = setup();
    sv(s, '220 ftp');
    c(s, 'EPSV');
    sv(s, '229 Entering Extended Passive Mode (|||40003|)');
    const claim = reg.claim(flow(f.clientIp, 50002, f.serverIp, 40003), ts())!;
    c(s, 'RETR f.bin');
    sv(s, '150 Opening');
    claim.channel.onData(Dir.ToClient, Buffer.alloc(10, 1), ts());
    sv(s, '226 Transfer complete.');
    claim.channel.onEnd(Dir.ToClient, 'rst', ts());
    claim.channel.onEnd(Dir.ToServer, 'rst', ts());
    s.onClose(ts());
    const ev = rec.events.find((e) => get(e.fields, 'ftp.request.command') === 'RETR')!;
    expect(get(ev.fields, 'ftp.data.truncated')).toBeUndefined();
    expect(get(ev.fields, 'file.size')).toBe(10);
    expect(rec.anomalies).toEqual({});
  });

  it('associates an EPSV data connection with the next RETR: bytes, size, sha256', () => {
    const { rec, reg, s, f } = setup();
    sv(s, '220 ftp');
    c(s, 'EPSV');
    sv(s, '229 Entering Extended Passive Mode (|||40001|)');
    const claim = reg.claim(flow(f.clientIp, 50000, f.serverIp, 40001), ts());
    expect(claim).toBeDefined();
    c(s, 'RETR dir/file.bin');
    sv(s, '150 Opening');
    const payload = Buffer.from('0123456789'.repeat(100));
    claim!.channel.onData(Dir.ToClient, payload.subarray(0, 300), ts());
    claim!.channel.onData(Dir.ToClient, payload.subarray(300), ts());
    sv(s, '226 Transfer complete.');
    // reply first, data connection completes afterwards: the event waits for it
    expect(rec.events.filter((e) => get(e.fields, 'ftp.request.command') === 'RETR')).toHaveLength(0);
    claim!.channel.onEnd(Dir.ToClient, 'fin', ts());
    claim!.channel.onEnd(Dir.ToServer, 'fin', ts());
    const ev = rec.events.find((e) => get(e.fields, 'ftp.request.command') === 'RETR')!;
    expect(get(ev.fields, 'ftp.data.bytes')).toBe(1000);
    expect(get(ev.fields, 'ftp.data.transfer')).toBe('download');
    expect(get(ev.fields, 'file.name')).toBe('file.bin');
    expect(get(ev.fields, 'file.size')).toBe(1000);
    expect(get(ev.fields, 'file.hash.sha256')).toBe(sha(payload));
    expect(get(ev.fields, 'ftp.response.code')).toBe(226);
    expect(get(ev.fields, 'ftp.response_preliminary')).toEqual([150]);
    s.onClose(ts());
  });

  it('PASV (227) and PORT: announcement before the command, data connection before the reply', () => {
    const { rec, reg, s, f } = setup();
    sv(s, '220 ftp');
    c(s, 'PASV');
    sv(s, '227 Entering Passive Mode (10,0,0,2,156,65).');
    const ch = reg.claim(flow(f.clientIp, 50001, '10.0.0.2', 40001), ts())!.channel;
    c(s, 'STOR up.txt');
    sv(s, '150 ok');
    ch.onData(Dir.ToServer, Buffer.from('uploaded'), ts());
    ch.onClose(ts());
    sv(s, '226 ok');
    c(s, 'PORT 10,0,0,1,200,10');
    sv(s, '200 PORT ok');
    c(s, 'LIST');
    // active mode: the server connects to the client's announced port
    const ch2 = reg.claim(flow('10.0.0.2', 20, '10.0.0.1', 200 * 256 + 10), ts())!.channel;
    sv(s, '150 here');
    ch2.onData(Dir.ToServer, Buffer.from('listing\r\n'), ts());
    ch2.onClose(ts());
    sv(s, '226 done');
    s.onClose(ts());
    const stor = rec.events.find((e) => get(e.fields, 'ftp.request.command') === 'STOR')!;
    expect(get(stor.fields, 'ftp.data.bytes')).toBe(8);
    expect(get(stor.fields, 'ftp.data.transfer')).toBe('upload');
    const list = rec.events.find((e) => get(e.fields, 'ftp.request.command') === 'LIST')!;
    expect(get(list.fields, 'ftp.data.bytes')).toBe(9);
    expect(get(list.fields, 'ftp.data.transfer')).toBe('download');
  });

  it('emits a transfer whose data connection never showed at its final reply, saying so', () => {
    const { rec, s } = setup();
    sv(s, '220 ftp');
    c(s, 'EPSV');
    sv(s, '229 (|||40002|)');
    c(s, 'RETR lost.txt');
    sv(s, '150 ok', '226 ok');
    expect(rec.events.filter((e) => get(e.fields, 'ftp.request.command') === 'RETR')).toHaveLength(1);
    c(s, 'NOOP');
    sv(s, '200 ok');
    s.onClose(ts());
    const ev = rec.events.find((e) => get(e.fields, 'ftp.request.command') === 'RETR')!;
    expect(get(ev.fields, 'ftp.data.seen')).toBe(false);
    expect(get(ev.fields, 'ftp.data.reason')).toBe('data_connection_not_seen');
    expect(get(ev.fields, 'file.hash')).toBeUndefined();
  });

  it('waits for an open data connection at most until the next final reply or the time bound', () => {
    const { rec, reg, s, f } = setup();
    sv(s, '220 ftp');
    c(s, 'EPSV');
    sv(s, '229 (|||40003|)');
    const ch = reg.claim(flow(f.clientIp, 50003, f.serverIp, 40003), ts())!.channel;
    c(s, 'RETR slow.bin');
    ch.onData(Dir.ToClient, Buffer.from('part'), ts());
    sv(s, '150 ok', '226 ok');
    expect(rec.events.filter((e) => get(e.fields, 'ftp.request.command') === 'RETR')).toHaveLength(0);
    c(s, 'NOOP');
    sv(s, '200 ok');
    const ev = rec.events.find((e) => get(e.fields, 'ftp.request.command') === 'RETR')!;
    expect(get(ev.fields, 'ftp.data.complete')).toBe(false);
    expect(get(ev.fields, 'ftp.data.bytes')).toBe(4);
    expect(get(ev.fields, 'file.hash')).toBeUndefined();
    s.onClose(ts());
  });

  it('does not let a data connection that predates the announcement be claimed, and expectations expire', () => {
    const rec = new Recorder();
    const reg = new DataChannelRegistry(rec, { expectationTtlSeconds: 5 });
    let attached = 0;
    const t0 = ts();
    reg.expect({ ip: '10.0.0.2', port: 1000, ts: t0, protectedExpected: false, attach: (fl) => (attached++, new (class {})() as never) });
    expect(reg.claim(flow('10.0.0.1', 1, '10.0.0.2', 1000, { sec: t0.sec - 100, nsec: 0 }), t0)).toBeUndefined();
    expect(reg.claim(flow('10.0.0.1', 1, '10.0.0.2', 1000, { sec: t0.sec + 100, nsec: 0 }), t0)).toBeUndefined();
    expect(attached).toBe(0);
    expect(rec.anomalies.ftp_data_expectation_expired).toBe(1);
  });

  it('never throws on random bytes and on every prefix of a real session', () => {
    const script: [Dir, string][] = [
      [Dir.ToClient, '220-a\r\n220 b\r\n'],
      [Dir.ToServer, 'USER x\r\nPASS y\r\n'],
      [Dir.ToClient, '331 p\r\n230 ok\r\n'],
      [Dir.ToServer, 'EPSV\r\n'],
      [Dir.ToClient, '229 (|||4000|)\r\n'],
      [Dir.ToServer, 'RETR f\r\n'],
      [Dir.ToClient, '150 go\r\n226 ok\r\n'],
      [Dir.ToServer, 'AUTH TLS\r\n'],
      [Dir.ToClient, '234 go\r\n'],
    ];
    const total = script.reduce((n, [, t]) => n + t.length, 0);
    fc.assert(
      fc.property(fc.nat(total), fc.integer({ min: 1, max: 13 }), (cut, step) => {
        const rec = new Recorder();
        const s = new FtpSession(CTRL(), rec, rec, new DataChannelRegistry(rec), { startTls: () => {} });
        let left = cut;
        for (const [dir, text] of script) {
          const b = Buffer.from(text.slice(0, Math.max(0, left)));
          left -= text.length;
          for (let i = 0; i < b.length; i += step) s.onData(dir, b.subarray(i, i + step), ts());
          if (left <= 0) break;
        }
        s.onClose(ts());
      }),
      { numRuns: 300 },
    );
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.boolean(), fc.uint8Array({ maxLength: 200 }), fc.nat(3)), { maxLength: 40 }), (chunks) => {
        const rec = new Recorder();
        const reg = new DataChannelRegistry(rec);
        const s = new FtpSession(CTRL(), rec, rec, reg, { startTls: () => {} }, { maxHoldBytes: 128, maxLineBytes: 64 });
        for (const [toServer, bytes, kind] of chunks) {
          const dir = toServer ? Dir.ToServer : Dir.ToClient;
          if (kind === 3) s.onGap(dir, 10, ts());
          else s.onData(dir, Buffer.from(bytes), ts());
        }
        s.onClose(ts());
      }),
      { numRuns: 300 },
    );
  });
});
