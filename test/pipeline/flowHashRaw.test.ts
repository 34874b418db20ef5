import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { CaptureReader } from '../../src/capture/index.js';
import { decodePacket, newDecodedPacket } from '../../src/decode/index.js';
import { flowHash, flowHashEthIpv4Tcp, hostPairHash, hostPairHashEthIpv4Tcp, packetHash } from '../../src/pipeline/flowHash.js';
import type { RawPacket } from '../../src/types.js';

function packetsOf(path: string): RawPacket[] {
  const out: RawPacket[] = [];
  const r = new CaptureReader({ packet: (p) => out.push({ ...p, data: Buffer.from(p.data) }), secrets() {}, anomaly() {} });
  r.push(readFileSync(path));
  r.end();
  return out;
}

describe('hashing straight from Ethernet/IPv4/TCP frame bytes (sharding fast path)', () => {
  const ign = { anomaly() {} };
  it('gives the decoded packet\'s flowHash and hostPairHash, or -1 for frames it does not handle', () => {
    const dp = newDecodedPacket();
    let fast = 0;
    for (const f of ['tls13-parallel-http11', 'variant-vlan', 'variant-vxlan', 'ipv6-tls13-http11']) {
      for (const p of packetsOf(`fixtures/https/${f}/capture.pcap`)) {
        const fh = flowHashEthIpv4Tcp(p.data);
        const hh = hostPairHashEthIpv4Tcp(p.data);
        expect(fh === -1).toBe(hh === -1);
        if (fh === -1) continue;
        fast++;
        expect(decodePacket(p, dp, ign)).toBe('tcp');
        expect(fh).toBe(flowHash(dp));
        expect(hh).toBe(hostPairHash(dp));
      }
    }
    expect(fast).toBeGreaterThan(100);
  });

  it('packetHash: the decoded hash for every TCP and UDP frame (fast path or not), -1 for the rest', () => {
    const dp = newDecodedPacket();
    const scratch = newDecodedPacket();
    let tcp = 0;
    let udp = 0;
    for (const f of ['https/tls13-parallel-http11', 'https/variant-vlan', 'https/variant-vxlan', 'https/ipv6-tls13-http11', 'quic/multi-conn']) {
      for (const p of packetsOf(`fixtures/${f}/capture.pcap`)) {
        const kind = decodePacket(p, dp, ign);
        const hashed = kind === 'tcp' || kind === 'udp';
        if (kind === 'tcp') tcp++;
        if (kind === 'udp') udp++;
        expect(packetHash(p, true, scratch)).toBe(hashed ? flowHash(dp) : -1);
        expect(packetHash(p, false, scratch)).toBe(hashed ? hostPairHash(dp) : -1);
      }
    }
    expect(tcp).toBeGreaterThan(100);
    expect(udp).toBeGreaterThan(40);
  });

  it('never throws on arbitrary bytes', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 80 }), (b) => {
      const h = flowHashEthIpv4Tcp(Buffer.from(b));
      expect(h === -1 || (h >= 0 && h <= 0xffffffff)).toBe(true);
    }));
  });
});
