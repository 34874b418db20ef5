/**
 * QUIC everywhere the engine runs: the CLI's replay on a file and on stdin, replay --workers 2
 * (host-pair shards keep a connection's paths together), and Kafka publish pcap + run against the
 * real broker (packets partitioned by the UDP 5-tuple; keys published after the packets). Each
 * must give exactly the events of the in-process replay.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { replayFile } from '../helpers/replay.js';
import { resolveRunConfig } from '../../src/kafka/config.js';
import { packetPartition, publishKeylog, publishPcap } from '../../src/kafka/publish.js';
import { startRun } from '../../src/kafka/run.js';
import { CaptureReader } from '../../src/capture/index.js';
import { newDecodedPacket } from '../../src/decode/index.js';
import type { RawPacket } from '../../src/types.js';
import { brokers, client, ensureBuilt, readAll, REPO, sleep, uniq, until } from '../kafka/helpers.js';

const CLI = join(REPO, 'dist/src/cli.js');
const FX = join(REPO, 'fixtures/quic');
const dir = mkdtempSync(join(tmpdir(), 'tlsdecrypt-quic-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
beforeAll(() => ensureBuilt(), 300_000);

function cli(args: string[], input?: Buffer): { code: number | null; lines: string[] } {
  const r = spawnSync(process.execPath, [CLI, ...args], { input, encoding: 'buffer', timeout: 120_000 });
  return { code: r.status, lines: r.stdout.toString().trim().split('\n').filter(Boolean) };
}

const canon = (evs: unknown[]): string[] => evs.map((e) => JSON.stringify(e)).sort();

describe('QUIC through the CLI', () => {
  for (const name of ['multi-conn', 'migration-nat-rebinding', 'resumption-0rtt']) {
    it(`replay file, stdin and --workers 2 give the in-process events (${name})`, () => {
      const cap = join(FX, name, 'capture.pcap');
      const keys = join(FX, name, 'keys.log');
      const want = canon(replayFile(cap, { keylogs: [keys] }).events);
      expect(want.length).toBeGreaterThan(2);
      const file = cli(['replay', cap, '--keylog', keys, '-q']);
      const stdin = cli(['replay', '-', '--keylog', keys, '-q'], readFileSync(cap));
      const two = cli(['replay', cap, '--keylog', keys, '-q', '--workers', '2']);
      for (const r of [file, stdin, two]) {
        expect(r.code).toBe(0);
        expect(canon(r.lines.map((l) => JSON.parse(l)))).toEqual(want);
      }
    });
  }
});

describe('QUIC through Kafka (real broker)', () => {
  it('partitions QUIC datagrams by the UDP 5-tuple: both directions of a path in one partition', () => {
    const parts = new Map<string, Set<number>>();
    const scratch = newDecodedPacket();
    const sink = {
      packet(p: RawPacket): void {
        const part = packetPartition(p, scratch, 8);
        const ports = [scratch.srcPort, scratch.dstPort].sort().join('-');
        (parts.get(ports) ?? parts.set(ports, new Set()).get(ports)!).add(part);
      },
      secrets(): void {},
      anomaly(): void {},
    };
    const r = new CaptureReader(sink);
    r.push(readFileSync(join(FX, 'multi-conn', 'capture.pcap')));
    r.end();
    expect(parts.size).toBe(3);
    for (const s of parts.values()) expect(s.size).toBe(1);
  });

  // The connections are still open when every packet is read (no capture time passes after them):
  // the replay watermark holds their partitions' commits at their first packets, and the stop with
  // --finish-on-stop closes them into their tls.session events, as replay's end of input does.
  // (Without it they are left open for the next owner: test/kafka/replay-window.test.ts.)
  it.each([1, 2])('publish pcap + run --workers %i with the keys published 3 s after the packets, then a stop: events equal replay', async (workers) => {
    const fx = mkdtempSync(join(dir, 'kafka-'));
    const capture = join(fx, 'capture.pcap');
    const keylog = join(fx, 'keys.log');
    copyFileSync(join(FX, 'multi-conn', 'capture.pcap'), capture);
    copyFileSync(join(FX, 'multi-conn', 'keys.log'), keylog);
    const want = replayFile(capture, { keylogs: [keylog] }).events;
    const c = client();
    const t = uniq('quic');
    const packets = `${t}.packets`, secrets = `${t}.secrets`, events = `${t}.events`, groupId = `${t}.group`;
    const pub = await publishPcap(c, { capture, topic: packets, partitions: 4, format: 'frame', batchBytes: 4096 });
    const publishedAt = Date.now();
    const cfg = resolveRunConfig(
      { brokers: brokers(), 'packets-topic': packets, 'secrets-topic': secrets, 'events-topic': events, 'group-id': groupId, 'stats-interval': '0', 'max-cpu': '0', 'max-memory': '0', workers: String(workers), 'finish-on-stop': true },
      {},
    );
    const h = await startRun(c, cfg);
    let summary;
    try {
      await until('packets consumed', () => h.counters.packets >= pub.packets, 90_000);
      expect(h.counters.packets).toBe(pub.packets);
      const wait = publishedAt + 3000 - Date.now();
      if (wait > 0) await sleep(wait);
      await publishKeylog(c, { file: keylog, topic: secrets, partitions: 1, follow: false });
      const lines = readFileSync(keylog, 'utf8').split('\n').filter((l) => l.trim()).length;
      await until('secrets read by the engine', () => h.counters.secretLines >= lines, 60_000);
    } finally {
      h.stop();
      summary = await h.done;
    }
    expect(summary.exitCode).toBe(0);
    const got = (await readAll(c, events)).map((r) => JSON.parse(r.value!.toString()));
    expect(canon(got)).toEqual(canon(want));
    expect(got.filter((e) => e.event.dataset === 'http')).toHaveLength(3);
  }, 180_000);
});
