/**
 * Live traffic into Kafka, end to end with real kernel traffic and the real broker:
 *
 *   curl (SSLKEYLOGFILE) in h13cli ──HTTPS──▶ openssl s_server in h13srv
 *     the server veth's ingress and egress mirrored by the kernel (tc u32 + mirred) into
 *     a VXLAN device (VNI 42) / a Geneve device (VNI 43; user-space encapsulation of the same
 *     frames where the kernel has no geneve) / `tcpdump -U -w - | publish pcap -` /
 *     `dumpcap -w - | publish pcap -` (pcapng)
 *   ──▶ publish mirror (10.93.2.2:4789 + :6081) / publish pcap - ──▶ packets topic
 *   publish keylog --follow ──▶ secrets topic;  run ──▶ events (stdout)
 *
 * Every request must come out as an http event (sensor = the feed) while the feeds are still
 * running; bad datagrams (truncated, garbage, wrong VXLAN flags, Geneve critical / non-critical
 * options, non-IP inner frames) are counted by kind and skipped, the receiver keeps running, and
 * SIGTERM flushes and exits 0. Needs root and network namespaces (skipped with the reason
 * otherwise; CI runs as root).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { brokers, ensureBuilt, REPO, uniq, until } from '../kafka/helpers.js';

const P = 'h13';
const NETNS = `${REPO}/test/mirror/netns.sh`;
const CLI = `${REPO}/dist/src/cli.js`;

function skipReason(): string | undefined {
  if (process.platform !== 'linux') return 'not Linux';
  if (process.getuid?.() !== 0) return 'not root (network namespaces need root; CI runs as root)';
  const probe = `${P}probe${process.pid % 1000}`;
  const r = spawnSync('ip', ['netns', 'add', probe], { encoding: 'utf8' });
  if (r.status !== 0) return `no network namespace support (ip netns add: ${(r.stderr || r.error?.message || '').trim()})`;
  spawnSync('ip', ['netns', 'del', probe]);
  return undefined;
}

const reason = skipReason();
if (reason) console.warn(`test/mirror/mirror-netns.test.ts skipped: ${reason}`);

interface Proc {
  p: ChildProcess;
  out: string;
  err: string;
  exit: Promise<number | null>;
}

function start(cmd: string, args: string[]): Proc {
  const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const r: Proc = { p, out: '', err: '', exit: new Promise((res) => p.on('exit', (code) => res(code))) };
  p.stdout!.on('data', (d) => (r.out += d));
  p.stderr!.on('data', (d) => (r.err += d));
  return r;
}

function sh(script: string): string {
  const r = spawnSync('bash', ['-c', script], { encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) throw new Error(`${script.slice(0, 120)}: exit ${r.status}: ${r.stderr}`);
  return r.stdout;
}

// --threads 2: the same traffic read by two receive threads (src/kafka/mirrorThreads.ts); the
// publish pcap - cases do not depend on it and run once
for (const threads of [1, 2])
describe.skipIf(reason !== undefined)(`publish mirror --threads ${threads} / publish pcap - with kernel-mirrored traffic (netns)`, () => {
  const dir = mkdtempSync(join(tmpdir(), 'tlsdecrypt-mirror-'));
  const keys = join(dir, 'keys.log');
  const packets = uniq('h13.mirror.packets');
  const secrets = uniq('h13.mirror.secrets');
  const eventsTopic = uniq('h13.mirror.events');
  const procs: Proc[] = [];
  let geneve = 'none';
  let receiver: Proc;
  let run: Proc;
  let metricsUrl = '';

  const events = (): Record<string, any>[] =>
    run.out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l));

  const curl = (path: string): void => {
    sh(`ip netns exec ${P}cli env SSLKEYLOGFILE=${keys} curl -sk --max-time 10 -o /dev/null -w '%{http_code}' https://10.93.1.1${path}`);
  };

  /** The http event of a request path, from the expected sensor, within a few seconds. */
  const eventFor = (path: string): Promise<Record<string, any>> =>
    until(`an http event for ${path}`, () => events().find((e) => e.event?.dataset === 'http' && e.url?.path === path), 20_000, 100);

  const metric = async (name: string, labels = ''): Promise<number> => {
    const text = await (await fetch(metricsUrl)).text();
    const line = text.split('\n').find((l) => l.startsWith(`${name}${labels ? `{${labels}}` : ''} `));
    return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
  };

  /**
   * `tcpdump -U -w -` (or `dumpcap -w -`, pcapng) on the server veth into `consumer`, through a
   * fifo so that both pids are ours.
   */
  let fifos = 0;
  const tcpdumpPipe = async (consumer: string, capturer: 'tcpdump' | 'dumpcap' = 'tcpdump'): Promise<{ tcpdump: Proc; consumer: Proc }> => {
    const fifo = join(dir, `pipe${++fifos}`);
    sh(`mkfifo ${fifo}`);
    const c = start('bash', ['-c', `exec ${consumer} < ${fifo}`]);
    const cap = capturer === 'tcpdump' ? `tcpdump -U -n -i ${P}s0 -w -` : `dumpcap -q -i ${P}s0 -w -`;
    const t = start('bash', ['-c', `exec ip netns exec ${P}srv ${cap} > ${fifo}`]);
    procs.push(c, t);
    await until(`${capturer} capturing`, () => /listening on|Capturing on/.test(t.err), 10_000, 100);
    return { tcpdump: t, consumer: c };
  };

  beforeAll(async () => {
    ensureBuilt();
    spawnSync('bash', [NETNS, 'down', P]);
    geneve = sh(`bash ${NETNS} up ${P}`).trim().split('\n').pop()!.replace('geneve=', '');
    sh(`openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=h13.test -days 2 -keyout ${dir}/key.pem -out ${dir}/cert.pem 2>/dev/null`);
    writeFileSync(keys, '');
    const server = start('ip', ['netns', 'exec', `${P}srv`, 'openssl', 's_server', '-accept', '10.93.1.1:443', '-cert', `${dir}/cert.pem`, '-key', `${dir}/key.pem`, '-www', '-quiet']);
    procs.push(server);
    const b = brokers();
    receiver = start('node', [CLI, 'publish', 'mirror', '--listen', '10.93.2.2:4789', '--listen', '10.93.2.2:6081', '--brokers', b, '--topic', packets, '--partitions', '4', '--metrics-port', '0', '--linger-ms', '50', '--threads', String(threads)]);
    procs.push(receiver);
    await until('the receiver listening on both ports', () => (receiver.err.match(/mirror receiver listening/g) ?? []).length === 2, 30_000, 100);
    metricsUrl = /metrics on (http:\/\/\S+)/.exec(receiver.err)![1];
    const kl = start('node', [CLI, 'publish', 'keylog', keys, '--follow', '--poll-ms', '100', '--brokers', b, '--topic', secrets]);
    procs.push(kl);
    run = start('node', [CLI, 'run', '--brokers', b, '--packets-topic', packets, '--secrets-topic', secrets, '--events-topic', eventsTopic, '--group-id', uniq('h13.mirror.group'), '--stdout', '--stats-interval', '0']);
    procs.push(run);
    await until('run consuming', () => run.err.includes('"consuming"'), 45_000, 100);
  }, 120_000);

  afterAll(async () => {
    for (const p of procs.reverse()) {
      if (p.p.exitCode === null && p.p.signalCode === null) {
        p.p.kill('SIGKILL');
      }
    }
    spawnSync('bash', [NETNS, 'down', P]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('bad datagrams are counted by kind and skipped; the receiver keeps running', async () => {
    const s = createSocket('udp4');
    const send = (b: Buffer, port: number): Promise<void> => new Promise((r) => s.send(b, port, '10.93.2.2', () => r()));
    const eth = (type: number, payload: Buffer): Buffer => Buffer.concat([Buffer.from('020000000001020000000002', 'hex'), Buffer.from([type >> 8, type & 0xff]), payload]);
    const arp = eth(0x0806, Buffer.alloc(28));
    const vx = (flags: number, inner: Buffer): Buffer => Buffer.concat([Buffer.from([flags, 0, 0, 0, 0, 0, 99, 0]), inner]);
    const gv = (opts: Buffer, inner: Buffer, first = 0): Buffer =>
      Buffer.concat([Buffer.from([first | (opts.length / 4), 0, 0x65, 0x58, 0, 0, 99, 0]), opts, inner]);
    await send(Buffer.from([0x08, 0]), 4789); // vxlan_truncated
    await send(Buffer.alloc(64, 0xff), 4789); // garbage: I flag happens to be set, inner EtherType 0xffff -> inner_not_ip
    await send(vx(0x00, arp), 4789); // vxlan_bad_flags (no I flag)
    await send(vx(0x08, arp), 4789); // inner_not_ip
    await send(vx(0x08, Buffer.alloc(6)), 4789); // inner_truncated
    await send(Buffer.from([0x00, 0, 0x65]), 6081); // geneve_truncated
    await send(Buffer.alloc(64, 0xff), 6081); // garbage: version 3 -> geneve_bad_version
    await send(gv(Buffer.from([0x01, 0x08, 0x80, 0x01, 1, 2, 3, 4]), arp), 6081); // unknown critical option -> geneve_critical_option
    await send(gv(Buffer.from([0x01, 0x08, 0x05, 0x01, 1, 2, 3, 4]), arp), 6081); // non-critical option skipped, then inner ARP -> inner_not_ip
    await send(gv(Buffer.from([0x01, 0x08, 0x05, 0x02, 1, 2, 3, 4]), arp), 6081); // option longer than Opt Len -> geneve_bad_options
    await send(gv(Buffer.alloc(0), arp, 0), 6081).then(() => send(Buffer.concat([Buffer.from([0, 0x80, 0x65, 0x58, 0, 0, 99, 0]), arp]), 6081)); // O bit -> geneve_control
    s.close();
    const k = 'tlsdecrypt_mirror_decap_errors_total';
    await until('the bad datagrams counted', async () => (await metric(k, 'kind="geneve_control"')) === 1, 10_000, 100);
    expect(await metric(k, 'kind="vxlan_truncated"')).toBe(1);
    expect(await metric(k, 'kind="vxlan_bad_flags"')).toBe(1);
    expect(await metric(k, 'kind="inner_truncated"')).toBe(1);
    expect(await metric(k, 'kind="geneve_truncated"')).toBe(1);
    expect(await metric(k, 'kind="geneve_bad_version"')).toBe(1);
    expect(await metric(k, 'kind="geneve_critical_option"')).toBe(1);
    expect(await metric(k, 'kind="geneve_bad_options"')).toBe(1);
    // garbage, the ARP in VXLAN, the ARP behind a skipped option, the ARP of the first Geneve datagram; more
    // may come from the kernel mirror (ARP between the namespaces)
    expect(await metric(k, 'kind="inner_not_ip"')).toBeGreaterThanOrEqual(4);
    expect(await metric('tlsdecrypt_mirror_geneve_options_skipped_total')).toBeGreaterThanOrEqual(1);
    expect(receiver.p.exitCode).toBeNull();
  });

  it('VXLAN from tc mirred: every request decrypted by run while the feed runs', async () => {
    sh(`bash ${NETNS} mirror ${P} vx`);
    for (const path of ['/vxlan-1', '/vxlan-2']) {
      curl(path);
      const ev = await eventFor(path);
      expect(ev.observer?.name).toBe('vni-42@10.93.2.1');
      expect(ev.tags).toContain('Decryption Detection');
      expect(ev.http?.response?.status_code).toBe(200);
    }
  });

  it('Geneve (kernel device; where the kernel has no geneve, the same frames encapsulated in user space): every request decrypted', async () => {
    let enc: { tcpdump: Proc; consumer: Proc } | undefined;
    if (geneve === 'kernel') {
      sh(`bash ${NETNS} mirror ${P} gv`);
    } else {
      sh(`bash ${NETNS} mirror ${P} none`);
      enc = await tcpdumpPipe(`ip netns exec ${P}srv node ${REPO}/test/mirror/geneve-encap.mjs 10.93.2.2 6081 43`);
    }
    curl('/geneve-1');
    const ev = await eventFor('/geneve-1');
    expect(ev.observer?.name).toBe('vni-43@10.93.2.1');
    expect(ev.tags).toContain('Decryption Detection');
    if (enc) {
      enc.tcpdump.p.kill('SIGINT');
      await enc.consumer.exit;
    }
    sh(`bash ${NETNS} mirror ${P} none`);
  });

  it.skipIf(threads > 1)('tcpdump -U -w - | publish pcap -: published as packets arrive; SIGTERM flushes, exit 0', async () => {
    sh(`bash ${NETNS} mirror ${P} none`);
    const pipe = await tcpdumpPipe(`node ${CLI} publish pcap - --brokers ${brokers()} --topic ${packets} --sensor pipe --linger-ms 50`);
    curl('/pipe-1');
    const ev = await eventFor('/pipe-1');
    expect(ev.observer?.name).toBe('pipe');
    expect(ev.tags).toContain('Decryption Detection');
    // SIGTERM to the publisher while tcpdump keeps the pipe open: flush, summary, exit 0
    pipe.consumer.p.kill('SIGTERM');
    expect(await pipe.consumer.exit).toBe(0);
    expect(pipe.consumer.err).toMatch(/published \d+ packets in \d+ records/);
    expect(pipe.consumer.err).not.toMatch(/NOT delivered/);
    pipe.tcpdump.p.kill('SIGINT');
  });

  it.skipIf(threads > 1)('dumpcap -w - (pcapng) | publish pcap -: the same, until EOF', async () => {
    const pipe = await tcpdumpPipe(`node ${CLI} publish pcap - --brokers ${brokers()} --topic ${packets} --sensor pipe-ng --linger-ms 50`, 'dumpcap');
    curl('/pipeng-1');
    const ev = await eventFor('/pipeng-1');
    expect(ev.observer?.name).toBe('pipe-ng');
    expect(ev.tags).toContain('Decryption Detection');
    pipe.tcpdump.p.kill('SIGINT'); // dumpcap ends the stream: EOF for the publisher
    expect(await pipe.consumer.exit).toBe(0);
    expect(pipe.consumer.err).toMatch(/published \d+ packets in \d+ records/);
  });

  it('nothing dropped; SIGTERM flushes and exits 0 with a summary', async () => {
    expect(await metric('tlsdecrypt_publish_drops_total', 'cause="buffer_full"')).toBe(0);
    expect(await metric('tlsdecrypt_publish_drops_total', 'cause="kernel_socket_buffer"')).toBe(0);
    expect(await metric('tlsdecrypt_publish_published_packets_total')).toBe(await metric('tlsdecrypt_publish_packets_total'));
    receiver.p.kill('SIGTERM');
    expect(await receiver.exit).toBe(0);
    expect(receiver.err).toMatch(/received \d+ datagrams, published \d+ packets/);
    // every request has exactly one http event
    const paths = events().filter((e) => e.event?.dataset === 'http').map((e) => e.url?.path);
    for (const p of ['/vxlan-1', '/vxlan-2', '/geneve-1', ...(threads > 1 ? [] : ['/pipe-1', '/pipeng-1'])]) expect(paths.filter((x) => x === p)).toHaveLength(1);
  });
});
