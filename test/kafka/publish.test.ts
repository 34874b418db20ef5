import { spawn, spawnSync } from 'node:child_process';
import { appendFileSync, mkdtempSync, renameSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CaptureReader } from '../../src/capture/index.js';
import { decodePacket, newDecodedPacket } from '../../src/decode/index.js';
import { PCAP_CONTENT_TYPE, RecordDecoder } from '../../src/kafka/formats.js';
import { publishKeylog, publishPcap } from '../../src/kafka/publish.js';
import type { CaptureSink, RawPacket } from '../../src/types.js';
import { brokers, client, conversations, ensureBuilt, pcapFile, readAll, REPO, sleep, uniq, until } from './helpers.js';
import type { InRecord } from '../../src/kafka/adapter.js';

const dir = mkdtempSync(join(tmpdir(), 'tlsdecrypt-kafka-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Unordered flow key of a packet ("a:p|b:q" with the endpoints sorted). */
function flowKey(p: RawPacket): string | undefined {
  const d = newDecodedPacket();
  if (decodePacket(p, d, { anomaly() {} }) !== 'tcp') return undefined;
  const a = `${[...d.srcAddr].join('.')}:${d.srcPort}`;
  const b = `${[...d.dstAddr].join('.')}:${d.dstPort}`;
  return a < b ? `${a}|${b}` : `${b}|${a}`;
}

function packetsOf(records: InRecord[]): { partition: number; p: RawPacket }[] {
  const out: { partition: number; p: RawPacket }[] = [];
  for (const r of records) {
    const sink: CaptureSink = { packet: (p) => out.push({ partition: r.partition, p: { ...p, data: Buffer.from(p.data) } }), secrets() {}, anomaly() {} };
    expect(new RecordDecoder(sink).decode(r)).toBe(true);
  }
  return out;
}

function checkAffinity(got: { partition: number; p: RawPacket }[], flows: number): void {
  const where = new Map<string, Set<number>>();
  const dirs = new Map<string, Set<string>>();
  for (const { partition, p } of got) {
    const k = flowKey(p)!;
    expect(k).toBeDefined();
    (where.get(k) ?? where.set(k, new Set()).get(k)!).add(partition);
    const d = newDecodedPacket();
    decodePacket(p, d, { anomaly() {} });
    (dirs.get(k) ?? dirs.set(k, new Set()).get(k)!).add(`${d.srcPort}`);
  }
  expect(where.size).toBe(flows);
  for (const [k, parts] of where) {
    expect(parts.size, `flow ${k} spread over partitions ${[...parts]}`).toBe(1);
    expect(dirs.get(k)!.size, `flow ${k} has both directions`).toBe(2);
  }
  // with 40 flows over 4 partitions, more than one partition is used
  expect(new Set(got.map((g) => g.partition)).size).toBeGreaterThan(1);
}

describe('publish pcap (real broker)', () => {
  const c = client();
  const segs = conversations(40);
  const file = join(dir, 'conv.pcap');
  writeFileSync(file, pcapFile(segs));

  it('pcap-stream form: flow-affine partitions, both directions together, all packets, timestamps kept', async () => {
    const topic = uniq('pub.pcap');
    const r = await publishPcap(c, { capture: file, topic, partitions: 4, format: 'pcap', batchBytes: 2048 });
    expect(r.packets).toBe(segs.length);
    expect(r.partitions).toBe(4);
    const records = await readAll(c, topic);
    expect(records.length).toBe(r.records);
    expect(records.length).toBeGreaterThan(4); // batch-bytes 2048 splits the streams
    for (const rec of records) {
      expect(rec.headers['content-type'].toString()).toBe(PCAP_CONTENT_TYPE);
      expect(rec.value!.readUInt32LE(0)).toBe(0xa1b23c4d); // nanosecond magic
    }
    const got = packetsOf(records);
    expect(got.length).toBe(segs.length);
    checkAffinity(got, 40);
    const ts = got.map((g) => `${g.p.ts.sec}.${g.p.ts.nsec}`).sort();
    const want = segs.map((s) => `${s.tsSec}.${s.tsUsec * 1000}`).sort();
    expect(ts).toEqual(want);
  });

  it('frame form (Metron): one record per frame, key = capture time in µs big-endian, headers', async () => {
    const topic = uniq('pub.frame');
    const r = await publishPcap(c, { capture: file, topic, partitions: 4, format: 'frame', batchBytes: 1 << 20, sensor: 'tap-7' });
    expect(r.records).toBe(segs.length);
    const records = await readAll(c, topic);
    expect(records.length).toBe(segs.length);
    for (const rec of records) {
      expect(rec.key!.length).toBe(8);
      const us = rec.key!.readBigUInt64BE(0);
      expect(BigInt(rec.headers['ts-ns'].toString())).toBe(us * 1000n);
      expect(rec.headers.linktype.toString()).toBe('1');
      expect(Number(rec.headers.origlen.toString())).toBe(rec.value!.length);
      expect(rec.headers.sensor.toString()).toBe('tap-7');
    }
    const got = packetsOf(records);
    expect(got.every((g) => g.p.sensor === 'tap-7')).toBe(true);
    checkAffinity(got, 40);
  });

  it('an existing topic keeps its partition count (affinity uses the real count)', async () => {
    const topic = uniq('pub.existing');
    const admin = await c.admin();
    await admin.ensureTopic(topic, 3);
    await admin.close();
    const r = await publishPcap(c, { capture: file, topic, partitions: 8, format: 'pcap', batchBytes: 1 << 20 });
    expect(r.partitions).toBe(3);
    const got = packetsOf(await readAll(c, topic));
    expect(new Set(got.map((g) => g.partition)).size).toBeLessThanOrEqual(3);
    checkAffinity(got, 40);
  });
});

describe('publish keylog (real broker)', () => {
  const c = client();
  const cr = (i: number): string => i.toString(16).padStart(64, 'a');
  const sec = (i: number, n = 48): string => i.toString(16).padStart(n * 2, '0');

  it('keys records by client random; comments/blank skipped; malformed counted, never echoed', async () => {
    const topic = uniq('pub.keylog');
    const f = join(dir, 'keys.log');
    writeFileSync(
      f,
      [
        '# SSL/TLS secrets log file',
        '',
        `CLIENT_RANDOM ${cr(1)} ${sec(1)}`,
        `CLIENT_HANDSHAKE_TRAFFIC_SECRET ${cr(2)} ${sec(2, 32)}`,
        `SERVER_TRAFFIC_SECRET_0 ${cr(2)} ${sec(3, 32)}`,
        'CLIENT_RANDOM notHex SECRETVALUE-should-not-appear',
        `BOGUS_LABEL ${cr(3)} ${sec(3)}`,
        `RSA 0011223344556677 ${sec(9)}`,
      ].join('\n') + '\n',
    );
    const r = await publishKeylog(c, { file: f, topic, partitions: 2, follow: false });
    expect(r).toMatchObject({ published: 4, skipped: 2, malformed: 2 });
    const recs = await readAll(c, topic);
    // one record per client random holding all its lines, so a compacted topic keeps them all
    expect(recs.length).toBe(3);
    const byKey = recs.map((x) => [x.key!.toString(), x.value!.toString()]).sort();
    expect(byKey).toEqual(
      [
        [cr(1), `CLIENT_RANDOM ${cr(1)} ${sec(1)}`],
        [cr(2), `CLIENT_HANDSHAKE_TRAFFIC_SECRET ${cr(2)} ${sec(2, 32)}\nSERVER_TRAFFIC_SECRET_0 ${cr(2)} ${sec(3, 32)}`],
        ['0011223344556677', `RSA 0011223344556677 ${sec(9)}`],
      ].sort(),
    );
    // one client random -> one partition (default partitioner hashes the key)
    const parts = new Set(recs.filter((x) => x.key!.toString() === cr(2)).map((x) => x.partition));
    expect(parts.size).toBe(1);
  });

  it('--follow tails appends, a truncation and a rotation, and stops cleanly', async () => {
    const topic = uniq('pub.follow');
    const f = join(dir, 'follow.log');
    writeFileSync(f, `CLIENT_RANDOM ${cr(100)} ${sec(100)}\n`);
    let stop!: () => void;
    const stopSignal = new Promise<void>((r) => (stop = r));
    let published = 0;
    const done = publishKeylog(c, { file: f, topic, partitions: 1, follow: true, pollMs: 100, stopSignal, onPublished: (n) => (published = n) });
    await until('first line', () => published >= 1);
    appendFileSync(f, `CLIENT_RANDOM ${cr(101)} ${sec(101)}\nCLIENT_RANDOM ${cr(102)} `); // second line incomplete
    await until('appended line', () => published >= 2);
    await sleep(300);
    expect(published).toBe(2); // the partial line waits for its newline
    appendFileSync(f, `${sec(102)}\n`);
    await until('completed line', () => published >= 3);
    truncateSync(f, 0);
    await sleep(300);
    appendFileSync(f, `CLIENT_RANDOM ${cr(103)} ${sec(103)}\n`);
    await until('line after truncation', () => published >= 4);
    renameSync(f, f + '.1');
    writeFileSync(f, `CLIENT_RANDOM ${cr(104)} ${sec(104)}\n`);
    await until('line after rotation', () => published >= 5);
    stop();
    const r = await done;
    expect(r.published).toBe(5);
    expect(r.rotations).toBe(1);
    const keys = (await readAll(c, topic)).map((x) => x.key!.toString()).sort();
    expect(keys).toEqual([100, 101, 102, 103, 104].map(cr).sort());
  });
});

describe('publish CLI exit codes', () => {
  beforeAll(() => ensureBuilt(), 300_000);
  const cli = (...args: string[]) => spawnSync(process.execPath, [`${REPO}/dist/src/cli.js`, ...args], { encoding: 'utf8', timeout: 120_000 });

  it('exit 2 with one line for missing file, bad args, unreachable broker', () => {
    const missing = cli('publish', 'keylog', join(dir, 'nope.log'), '--brokers', brokers(), '--topic', 't1');
    expect(missing.status).toBe(2);
    expect(missing.stderr.trim().split('\n')).toEqual([`tlsdecrypt: cannot read key log ${join(dir, 'nope.log')}: ENOENT`]);
    const badFmt = cli('publish', 'pcap', join(dir, 'conv.pcap'), '--brokers', brokers(), '--topic', 't1', '--format', 'xml');
    expect(badFmt.status).toBe(2);
    expect(badFmt.stderr.trim().split('\n').length).toBe(1);
    const noTopic = cli('publish', 'pcap', join(dir, 'conv.pcap'), '--brokers', brokers());
    expect(noTopic.status).toBe(2);
    const f = join(dir, 'k2.log');
    writeFileSync(f, '# nothing\n');
    const down = cli('publish', 'keylog', f, '--brokers', '127.0.0.1:1', '--topic', 't1');
    expect(down.status).toBe(2);
    expect(down.stderr.trim().split('\n')).toEqual(['tlsdecrypt: cannot reach Kafka at 127.0.0.1:1']);
  });

  it('a pcapng DSB is reported as not published without --secrets-topic', async () => {
    // fixtures may carry pcapng with DSB later; a tiny pcapng with one DSB is built here
    const dsbText = Buffer.from(`CLIENT_RANDOM ${'ab'.repeat(32)} ${'cd'.repeat(48)}\n`);
    const pad = (b: Buffer) => Buffer.concat([b, Buffer.alloc((4 - (b.length % 4)) % 4)]);
    const block = (type: number, body: Buffer) => {
      const len = 12 + body.length;
      const h = Buffer.alloc(8);
      h.writeUInt32LE(type, 0);
      h.writeUInt32LE(len, 4);
      const t = Buffer.alloc(4);
      t.writeUInt32LE(len, 0);
      return Buffer.concat([h, body, t]);
    };
    const shbBody = Buffer.alloc(16);
    shbBody.writeUInt32LE(0x1a2b3c4d, 0);
    shbBody.writeUInt16LE(1, 4);
    shbBody.writeBigInt64LE(-1n, 8);
    const idbBody = Buffer.alloc(8);
    idbBody.writeUInt16LE(1, 0);
    idbBody.writeUInt32LE(65535, 4);
    const d = pad(dsbText);
    const dsbBody = Buffer.alloc(8 + d.length);
    dsbBody.writeUInt32LE(0x544c534b, 0);
    dsbBody.writeUInt32LE(dsbText.length, 4);
    d.copy(dsbBody, 8);
    const f = join(dir, 'dsb.pcapng');
    writeFileSync(f, Buffer.concat([block(0x0a0d0d0a, shbBody), block(1, idbBody), block(10, dsbBody)]));
    const topic = uniq('pub.dsb');
    const r = cli('publish', 'pcap', f, '--brokers', brokers(), '--topic', topic);
    expect(r.status).toBe(0);
    expect(r.stderr).toContain('NOT published');
    const st = uniq('pub.dsb.secrets');
    const r2 = cli('publish', 'pcap', f, '--brokers', brokers(), '--topic', topic, '--secrets-topic', st);
    expect(r2.status).toBe(0);
    const recs = await readAll(client(), st);
    expect(recs.map((x) => x.key!.toString())).toEqual(['ab'.repeat(32)]);
  });

  it('publish keylog --follow ends cleanly on SIGINT (exit 0, summary line)', async () => {
    const f = join(dir, 'sig.log');
    writeFileSync(f, `CLIENT_RANDOM ${'1'.repeat(64)} ${'2'.repeat(96)}\n`);
    const topic = uniq('pub.sig');
    const child = spawn(process.execPath, [`${REPO}/dist/src/cli.js`, 'publish', 'keylog', f, '--brokers', brokers(), '--topic', topic, '--follow', '--poll-ms', '100'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    const c = client();
    await until('first line published', async () => {
      const admin = await c.admin();
      try {
        return (await admin.topicExists(topic)) && (await admin.topicOffsets(topic)).reduce((a, o) => a + Number(o.high), 0) >= 1;
      } finally {
        await admin.close();
      }
    });
    appendFileSync(f, `CLIENT_RANDOM ${'3'.repeat(64)} ${'4'.repeat(96)}\n`);
    await until('second line published', async () => (await readAll(c, topic)).length >= 2);
    child.kill('SIGINT');
    const code = await Promise.race([exited, sleep(30_000).then(() => 'timeout')]);
    if (code === 'timeout') child.kill('SIGKILL');
    expect(code, err).toBe(0);
    expect(err.trim().split('\n').pop()).toBe(`tlsdecrypt: published 2 key-log lines to ${topic}`);
  });
});
