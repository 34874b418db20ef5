/**
 * Broker outage: `run` is consuming when its (private) broker is stopped, stays down longer than
 * kafkajs's own retry budget, and comes back (same data dir). The engine must neither exit nor hang:
 * it reconnects by itself, delivers what it held, and everything published after the restart is
 * decrypted and produced (events equal replay's; re-deliveries only with identical event.id).
 *
 * Uses its own broker (OwnBroker, port 19192 by default) so the shared broker is never disturbed.
 */
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { resolveRunConfig } from '../../src/kafka/config.js';
import { publishKeylog, publishPcap } from '../../src/kafka/publish.js';
import { startRun, type RunSummary } from '../../src/kafka/run.js';
import { REPO, sleep, uniq, until } from './helpers.js';
import { compare, expectAllOf, fixtureCopy, gated, OwnBroker, ownBrokerForFile, replayEvents, topicEvents, type Ev } from './resilienceHelpers.js';

const dir = mkdtempSync(join(tmpdir(), 'tlsdecrypt-resil-broker-'));
const broker = new OwnBroker();
const have = (f: string) => existsSync(join(REPO, 'fixtures/https', f, 'capture.pcap'));
// Capture times increase in this order (the engine's clock is capture time: no premature idle timeouts).
const BEFORE = 'tls13-aes128gcm-h2';
const AFTER = ['tls13-aes256gcm-http11', 'tls12-ecdhe-aes128gcm-http11'];

ownBrokerForFile(broker, dir);

describe('broker stopped and restarted mid-stream (private broker)', () => {
  it.runIf(have(BEFORE) && AFTER.every(have))(
    'run survives an outage longer than the client retry budget, reconnects, and events after the restart equal replay',
    async () => {
      const before = fixtureCopy(dir, BEFORE);
      const after = AFTER.map((f) => fixtureCopy(dir, f));
      const wantBefore = await replayEvents(dir, before.capture, before.keylog);
      const wantAfter = new Map<string, Ev>();
      for (const a of after) for (const [k, v] of await replayEvents(dir, a.capture, a.keylog)) wantAfter.set(k, v);
      expect(wantBefore.size).toBeGreaterThan(0);
      expect(wantAfter.size).toBeGreaterThan(0);

      const t = uniq('resil.broker');
      const packets = `${t}.packets`, secrets = `${t}.secrets`, events = `${t}.events`, groupId = `${t}.group`;
      const pubClient = broker.client('resil-publish');
      for (const f of [before, ...after]) await publishKeylog(pubClient, { file: f.keylog, topic: secrets, partitions: 1, follow: false });
      const pubBefore = await publishPcap(pubClient, { capture: before.capture, topic: packets, partitions: 4, format: 'pcap', batchBytes: 4096 });

      const cfg = resolveRunConfig(
        { brokers: broker.addr, 'packets-topic': packets, 'secrets-topic': secrets, 'events-topic': events, 'group-id': groupId, 'stats-interval': '0', 'finish-on-stop': true },
        {},
      );
      const g = gated(broker.client('resil-run'));
      const h = await startRun(g.client, cfg);
      let summary: RunSummary | undefined;
      let settled = false;
      void h.done.then(() => (settled = true));
      try {
        // The engine has consumed and decrypted BEFORE; its events are held at the producer.
        await until('BEFORE consumed', () => h.counters.packets >= pubBefore.packets && g.held() > 0, 90_000);
        broker.stop();
        g.open(); // the engine now produces (and then commits) against a dead broker
        // Down for longer than kafkajs's bounded retries (~10 s for 5 retries, 300 ms..5 s).
        await sleep(25_000);
        expect(settled, 'run must not end during a broker outage').toBe(false);
        broker.start();

        const c2 = broker.client('resil-publish-2');
        let pubAfterPackets = 0;
        for (const a of after) pubAfterPackets += (await publishPcap(c2, { capture: a.capture, topic: packets, partitions: 4, format: 'pcap', batchBytes: 4096 })).packets;
        const admin = await c2.admin();
        try {
          await until('everything consumed and committed after the restart', async () => (await admin.lag(groupId, packets)) === 0 && h.counters.packets >= pubBefore.packets + pubAfterPackets, 180_000, 500);
          // (the last flows' tls.session events come at stop: nothing advances capture time past them)
        } finally {
          await admin.close();
        }
        expect(settled).toBe(false);
      } finally {
        h.stop();
        summary = await h.done;
      }
      expect(summary.exitCode).toBe(0);

      const got = await topicEvents(broker.client('resil-read'), events);
      const all = new Map([...wantBefore, ...wantAfter]);
      const cmp = compare(got, all);
      console.log(`broker outage: ${got.length} event records, ${cmp.distinct} distinct, ${cmp.duplicates} re-deliveries, missing ${cmp.missing.length}, extra ${cmp.extra.length}; counters ${JSON.stringify(h.counters)}`);
      expect(cmp.conflicting).toEqual([]);
      expect(cmp.extra.map((e) => `${e.event.dataset}:${e.decryption?.status}`)).toEqual([]);
      // everything published after the restart, and (held across the outage) everything before it
      expectAllOf(got, wantAfter);
      expectAllOf(got, wantBefore);
    },
    420_000,
  );
});
