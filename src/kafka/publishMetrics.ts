/**
 * Metrics of the live publishers (`publish mirror`, `publish pcap -`) on --metrics-port, served by
 * the same OpsServer as `run` (/metrics, /healthz, /readyz). Their own registry: the `run` metrics
 * (decryption, flows) would only read 0 here. Values are read from the receiver's and batcher's
 * plain counters at scrape time, so the packet path never touches prom-client.
 *
 *   tlsdecrypt_mirror_datagrams_total{listen}      UDP datagrams received
 *   tlsdecrypt_mirror_bytes_total{listen}          UDP payload bytes received
 *   tlsdecrypt_mirror_decap_errors_total{kind}     datagrams skipped (mirrorDecap.ts kinds, inner_not_ip)
 *   tlsdecrypt_mirror_vni_filtered_total           datagrams of other VNIs (--vni)
 *   tlsdecrypt_mirror_geneve_options_skipped_total non-critical Geneve options skipped
 *   tlsdecrypt_publish_packets_total               packets accepted for publishing
 *   tlsdecrypt_publish_published_packets_total     packets acknowledged by Kafka
 *   tlsdecrypt_publish_records_total               records acknowledged by Kafka
 *   tlsdecrypt_publish_drops_total{cause}          packets lost: buffer_full, kafka_unavailable,
 *                                                  kafka_rejected, shutdown, kernel_socket_buffer
 *   tlsdecrypt_publish_latency_seconds             first packet of a record -> its acknowledgement
 *   tlsdecrypt_publish_buffer_bytes / _buffer_limit_bytes   bytes held now / --max-buffer-bytes
 *   tlsdecrypt_publish_kafka_connected             0 while sends fail
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { OpsServer, type Readiness } from '../ops/server.js';
import { opsLog } from '../ops/log.js';
import { PREFIX } from '../ops/metrics.js';
import type { BatcherStats } from './batcher.js';
import type { MirrorStats } from './mirror.js';

export const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** A counter whose value is a cumulative figure kept elsewhere (labels → value). */
function mirroredCounter(registry: Registry, name: string, help: string, labelNames: string[], read: () => Record<string, number> | number | undefined): void {
  const last = new Map<string, number>();
  new Counter({
    name: PREFIX + name,
    help,
    labelNames,
    registers: [registry],
    collect(this: Counter<string>) {
      const v = read();
      if (v === undefined) return;
      const entries: [string, number][] = typeof v === 'number' ? [['', v]] : Object.entries(v);
      for (const [label, cur] of entries) {
        const prev = last.get(label);
        const d = cur - (prev ?? 0);
        if (d < 0 || (d === 0 && prev !== undefined)) continue; // a first 0 still shows the series
        last.set(label, cur);
        if (labelNames.length) this.inc({ [labelNames[0]]: label }, d);
        else this.inc(d);
      }
    },
  });
}

export class PublishMetrics {
  readonly registry = new Registry();
  readonly latency: Histogram;
  mirror: MirrorStats | undefined;
  publish: BatcherStats | undefined;

  constructor(maxBufferBytes: number, defaultMetrics = true) {
    const r = this.registry;
    const self = this; // for prom-client's collect(), whose `this` is the metric
    mirroredCounter(r, 'mirror_datagrams_total', 'UDP datagrams received, by listen address', ['listen'], () => this.mirror?.datagrams);
    mirroredCounter(r, 'mirror_bytes_total', 'UDP payload bytes received, by listen address', ['listen'], () => this.mirror?.bytes);
    mirroredCounter(r, 'mirror_decap_errors_total', 'Datagrams not published because decapsulation failed, by kind', ['kind'], () => this.mirror?.decapErrors as Record<string, number> | undefined);
    mirroredCounter(r, 'mirror_vni_filtered_total', 'Datagrams of VNIs other than --vni', [], () => this.mirror?.vniFiltered);
    mirroredCounter(r, 'mirror_geneve_options_skipped_total', 'Non-critical Geneve options skipped', [], () => this.mirror?.geneveOptionsSkipped);
    mirroredCounter(r, 'publish_packets_total', 'Packets accepted for publishing', [], () => this.publish?.packets);
    mirroredCounter(r, 'publish_published_packets_total', 'Packets acknowledged by Kafka', [], () => this.publish?.publishedPackets);
    mirroredCounter(r, 'publish_records_total', 'Packets-topic records acknowledged by Kafka', [], () => this.publish?.publishedRecords);
    mirroredCounter(r, 'publish_drops_total', 'Packets lost, by cause', ['cause'], () => {
      if (!this.publish && !this.mirror) return undefined;
      return { ...(this.publish?.drops ?? {}), ...(this.mirror ? { kernel_socket_buffer: this.mirror.kernelDrops } : {}) };
    });
    this.latency = new Histogram({ name: PREFIX + 'publish_latency_seconds', help: 'From the first packet of a record to its acknowledgement by Kafka', buckets: LATENCY_BUCKETS, registers: [r] });
    new Gauge({ name: PREFIX + 'publish_buffer_bytes', help: 'Bytes held waiting for Kafka', registers: [r], collect(this: Gauge) { this.set(self.publish?.bufferedBytes ?? 0); } });
    new Gauge({ name: PREFIX + 'publish_buffer_limit_bytes', help: '--max-buffer-bytes', registers: [r] }).set(maxBufferBytes);
    new Gauge({ name: PREFIX + 'publish_kafka_connected', help: '1 while sends to Kafka succeed', registers: [r], collect(this: Gauge) { this.set(self.publish?.connected === false ? 0 : 1); } });
    if (defaultMetrics) collectDefaultMetrics({ register: r });
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** Starts the HTTP server (`--metrics-port`, 0 = any free port). */
  async serve(port: number, host: string | undefined, ready: () => Readiness): Promise<OpsServer> {
    const server = new OpsServer({ port, host, metrics: this, ready, log: opsLog.child('tlsdecrypt.http'), title: 'tlsdecrypt publish' });
    await server.listen();
    return server;
  }
}
