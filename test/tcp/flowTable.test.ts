import { describe, expect, it } from 'vitest';
import type { Dir } from '../../src/types.js';
import { communityId } from '../../src/events/communityId.js';
import { TcpFlowTable } from '../../src/tcp/index.js';
import { ACK, Anomalies, FIN, Recorder, RST, SYN, handshake, ip4, seg, setup, ts, type Endpoints } from './helpers.js';

const C2S = 0 as Dir;
const S2C = 1 as Dir;

function ep(a: string, aPort: number, b: string, bPort: number): Endpoints {
  return { a: ip4(a), aPort, b: ip4(b), bPort };
}

describe('tcp flow table: flow identity and roles', () => {
  it('maps both directions of a connection to one flow', () => {
    const { table, flows } = setup();
    handshake(table, 10, 20);
    table.processSegment(seg(false, 21, 'x'), ts(2));
    expect(flows).toHaveLength(1);
    expect(table.activeFlows).toBe(1);
    expect(table.stats.flowsCreated).toBe(1);
  });

  it('keeps connections that differ only in one port apart', () => {
    const { table, flows } = setup();
    handshake(table, 10, 20, 1, ep('10.0.0.1', 40000, '10.0.0.2', 443));
    handshake(table, 10, 20, 1, ep('10.0.0.1', 40001, '10.0.0.2', 443));
    handshake(table, 10, 20, 1, ep('10.0.0.2', 40000, '10.0.0.1', 443));
    expect(flows).toHaveLength(3);
  });

  it('takes roles from SYN: the sender of SYN is the client', () => {
    const { table, flows } = setup();
    table.processSegment(seg(true, 1, '', SYN, { ep: ep('192.168.1.5', 443, '192.168.1.9', 5555) }), ts(1));
    const i = flows[0].info;
    expect(i).toMatchObject({ clientIp: '192.168.1.5', clientPort: 443, serverIp: '192.168.1.9', serverPort: 5555 });
    expect(i.rolesFromHandshake).toBe(true);
  });

  it('takes roles from SYN-ACK when the SYN was not captured: its sender is the server', () => {
    const { table, flows } = setup();
    table.processSegment(seg(true, 1, '', SYN | ACK, { ep: ep('10.1.1.1', 50000, '10.1.1.2', 60000) }), ts(1));
    expect(flows[0].info).toMatchObject({ serverIp: '10.1.1.1', serverPort: 50000, clientPort: 60000, rolesFromHandshake: true });
  });

  it('guesses the server mid-stream from a well-known source port', () => {
    const { table, flows } = setup();
    table.processSegment(seg(true, 1, 'resp', ACK, { ep: ep('10.0.0.2', 443, '10.0.0.1', 51000) }), ts(1));
    expect(flows[0].info).toMatchObject({ serverIp: '10.0.0.2', serverPort: 443, clientIp: '10.0.0.1', rolesFromHandshake: false });
    expect(flows[0].stream(S2C)).toBe('resp');
  });

  it('guesses the server mid-stream from a known TLS port above 1024 (8443)', () => {
    const { table, flows } = setup();
    table.processSegment(seg(true, 1, 'x', ACK, { ep: ep('10.0.0.2', 8443, '10.0.0.1', 51000) }), ts(1));
    expect(flows[0].info.serverPort).toBe(8443);
  });

  it('uses the destination of the first packet as server when the ports do not decide', () => {
    const { table, flows } = setup();
    table.processSegment(seg(true, 1, 'x', ACK, { ep: ep('10.0.0.1', 50001, '10.0.0.2', 50002) }), ts(1));
    table.processSegment(seg(true, 1, 'x', ACK, { ep: ep('10.0.0.3', 25, '10.0.0.4', 443) }), ts(1));
    expect(flows[0].info).toMatchObject({ clientPort: 50001, serverPort: 50002, rolesFromHandshake: false });
    expect(flows[1].info).toMatchObject({ clientPort: 25, serverPort: 443 });
  });

  it('honours configured server ports', () => {
    const { table, flows } = setup({ serverPorts: [9000] });
    table.processSegment(seg(true, 1, 'x', ACK, { ep: ep('10.0.0.2', 9000, '10.0.0.1', 51000) }), ts(1));
    expect(flows[0].info.serverPort).toBe(9000);
  });

  it('tracks IPv6 flows with RFC 5952 addresses and the Community ID', () => {
    const { table, flows } = setup();
    const a = Buffer.from('20010db8000000000000000000000001', 'hex');
    const b = Buffer.from('20010db8000000000000000000000002', 'hex');
    const e6 = { a, aPort: 40000, b, bPort: 443 };
    handshake(table, 5, 9, 1, e6);
    table.processSegment(seg(false, 10, 'six', ACK, { ep: e6 }), ts(2));
    expect(flows).toHaveLength(1);
    expect(flows[0].info).toMatchObject({ clientIp: '2001:db8::1', serverIp: '2001:db8::2', ipVersion: 6 });
    expect(flows[0].info.communityId).toBe(communityId(a, 40000, b, 443, 6));
    expect(flows[0].stream(S2C)).toBe('six');
  });

  it('fills FlowInfo with ids, start time, sensor and Community ID', () => {
    const { table, flows } = setup();
    table.processSegment(seg(true, 1, '', SYN), { sec: 100, nsec: 5 }, 'tap-1');
    table.processSegment(seg(true, 1, '', SYN, { ep: ep('10.9.9.9', 1, '10.9.9.8', 2) }), ts(101));
    expect(flows[0].info.id).not.toBe(flows[1].info.id);
    expect(flows[0].info.start).toEqual({ sec: 100, nsec: 5 });
    expect(flows[0].info.sensor).toBe('tap-1');
    expect(flows[0].info.communityId).toBe(communityId(ip4('10.0.0.1'), 40000, ip4('10.0.0.2'), 443, 6));
  });

  it('counts non-TCP packets and does not create flows for them', () => {
    const { table, flows } = setup();
    const p = seg(true, 1, 'udp');
    p.protocol = 17;
    table.processSegment(p, ts(1));
    expect(flows).toHaveLength(0);
    expect(table.stats.packetsNotTcp).toBe(1);
  });

  it('does not create a flow for a stray RST', () => {
    const { table, flows } = setup();
    table.processSegment(seg(true, 1, '', RST), ts(1));
    expect(flows).toHaveLength(0);
    expect(table.stats.packetsIgnored).toBe(1);
  });

  it('contains an internal fault from a broken decoded packet and keeps processing', () => {
    const { table, flows, anomalies } = setup();
    handshake(table, 0, 0);
    const broken = seg(true, 1, 'x');
    (broken as unknown as { payload: unknown }).payload = undefined;
    expect(() => table.processSegment(broken, ts(2))).not.toThrow();
    expect(anomalies.count('tcp_internal_error')).toBe(1);
    table.processSegment(seg(true, 1, 'ok'), ts(2));
    expect(flows[0].stream(C2S)).toBe('ok');
  });

  it('rejects addresses of the wrong length as an anomaly', () => {
    const { table, flows, anomalies } = setup();
    const p = seg(true, 1, 'x');
    p.srcAddr = Buffer.alloc(3);
    table.processSegment(p, ts(1));
    expect(flows).toHaveLength(0);
    expect(anomalies.count('tcp_bad_address')).toBe(1);
  });
});

describe('tcp flow table: lifecycle', () => {
  it('closes idle flows by capture time with timeout, exactly once', () => {
    const { table, flows } = setup({ idleTimeoutSec: 300 });
    handshake(table, 0, 0, 1000);
    table.processSegment(seg(true, 1, 'ab'), ts(1000));
    table.processSegment(seg(true, 5, 'ef'), ts(1010)); // hole at 2..3
    handshake(table, 0, 0, 1200, ep('10.0.0.7', 1234, '10.0.0.8', 443));
    expect(flows[0].closes()).toHaveLength(0);
    handshake(table, 0, 0, 1310, ep('10.0.0.7', 1235, '10.0.0.8', 443));
    expect(flows[0].closes().map((c) => c.reason)).toEqual(['timeout']);
    expect(flows[0].stream(C2S)).toBe('ab??ef');
    expect(flows[0].ends()).toEqual([[C2S, 'timeout'], [S2C, 'timeout']]);
    expect(flows[1].closes()).toHaveLength(0);
    table.expire(ts(5000));
    table.closeAll();
    expect(flows[0].closes()).toHaveLength(1);
    expect(flows.map((f) => f.closes().length)).toEqual([1, 1, 1]);
    expect(table.stats.flowsTimedOut).toBe(3);
  });

  it("clock 'ticks': a packet times out only its own idle flow; other flows wait for expire()", () => {
    const { table, flows } = setup({ idleTimeoutSec: 300, closedTimeoutSec: 10, clock: 'ticks' });
    const e2 = ep('10.0.0.7', 1234, '10.0.0.8', 443);
    handshake(table, 0, 0, 1000);
    table.processSegment(seg(true, 1, 'ab'), ts(1000));
    // another connection an hour on (as a partition far ahead): the first flow stays open
    handshake(table, 0, 0, 4600, e2);
    expect(flows[0].closes()).toHaveLength(0);
    table.processSegment(seg(true, 3, 'cd'), ts(1010));
    expect(flows[0].stream(C2S)).toBe('abcd');
    // its own packet after its idle timeout ends it and starts a new flow
    table.processSegment(seg(true, 5, 'ef'), ts(1400));
    expect(flows[0].closes().map((c) => c.reason)).toEqual(['timeout']);
    expect(flows).toHaveLength(3);
    expect(flows[1].closes()).toHaveLength(0);
    // the tick is what times the others out
    table.expire(ts(5000));
    expect(flows[1].closes().map((c) => c.reason)).toEqual(['timeout']);
    expect(flows[2].closes().map((c) => c.reason)).toEqual(['timeout']);
    expect(table.stats.flowsTimedOut).toBe(3);
  });

  it("clock 'ticks': a closed flow's own packet after closedTimeoutSec starts a new flow", () => {
    const { table, flows } = setup({ closedTimeoutSec: 10, clock: 'ticks' });
    handshake(table, 0, 0, 1);
    table.processSegment(seg(true, 1, '', FIN | ACK), ts(2));
    table.processSegment(seg(false, 1, '', FIN | ACK), ts(2));
    handshake(table, 0, 0, 500, ep('10.0.0.7', 1234, '10.0.0.8', 443));
    expect(flows[0].closes()).toHaveLength(0);
    table.processSegment(seg(true, 2, 'late', ACK), ts(20));
    expect(flows[0].closes().map((c) => c.reason)).toEqual(['fin']);
    expect(flows).toHaveLength(3);
  });

  it("clock 'ticks' with closedTimeoutSec 0: trailing packets of the closing second are absorbed; the tick ends the flow", () => {
    const { table, flows } = setup({ closedTimeoutSec: 0, clock: 'ticks' });
    handshake(table, 0, 0, 1);
    table.processSegment(seg(true, 1, '', FIN | ACK), ts(2, 100));
    table.processSegment(seg(false, 1, '', FIN | ACK), ts(2, 200));
    table.processSegment(seg(true, 2, '', ACK), ts(2, 300)); // the last ACK
    expect(flows).toHaveLength(1);
    expect(table.activeFlows).toBe(1);
    table.expire(ts(2, 300));
    expect(flows[0].closes().map((c) => c.reason)).toEqual(['fin']);
    expect(table.activeFlows).toBe(0);
  });

  it('evicts the least recently active flow when the table is full', () => {
    const { table, flows, anomalies } = setup({ maxFlows: 2 });
    handshake(table, 0, 0, 1, ep('10.0.0.1', 1001, '10.0.0.2', 443));
    handshake(table, 0, 0, 2, ep('10.0.0.1', 1002, '10.0.0.2', 443));
    table.processSegment(seg(true, 1, 'keep', ACK, { ep: ep('10.0.0.1', 1001, '10.0.0.2', 443) }), ts(3));
    handshake(table, 0, 0, 4, ep('10.0.0.1', 1003, '10.0.0.2', 443));
    expect(flows[1].closes().map((c) => c.reason)).toEqual(['evicted']);
    expect(flows[0].closes()).toHaveLength(0);
    expect(table.activeFlows).toBe(2);
    expect(table.stats.flowsEvicted).toBe(1);
    expect(anomalies.count('flow_evicted')).toBe(1);
  });

  it('evicts a closing flow before an active one, with its own reason', () => {
    const { table, flows, anomalies } = setup({ maxFlows: 2 });
    const e1 = ep('10.0.0.1', 1001, '10.0.0.2', 443);
    handshake(table, 0, 0, 1, e1);
    handshake(table, 0, 0, 2, ep('10.0.0.1', 1002, '10.0.0.2', 443));
    table.processSegment(seg(true, 1, '', FIN | ACK, { ep: e1 }), ts(3));
    table.processSegment(seg(false, 1, '', FIN | ACK, { ep: e1 }), ts(3));
    handshake(table, 0, 0, 4, ep('10.0.0.1', 1003, '10.0.0.2', 443));
    expect(flows[0].closes().map((c) => c.reason)).toEqual(['fin']);
    expect(flows[1].closes()).toHaveLength(0);
    expect(anomalies.count('flow_evicted')).toBe(0);
  });

  it('starts a new flow when a closed connection is reused with a new ISN', () => {
    const { table, flows } = setup();
    handshake(table, 100, 200, 1);
    table.processSegment(seg(true, 101, 'one', FIN | ACK), ts(2));
    table.processSegment(seg(false, 201, '', FIN | ACK, { ack: 105 }), ts(2));
    table.processSegment(seg(true, 105, '', ACK, { ack: 202 }), ts(2));
    table.processSegment(seg(true, 9000, '', SYN), ts(3)); // SYN retransmission would reuse ISN 100
    expect(flows).toHaveLength(2);
    expect(flows[0].closes().map((c) => c.reason)).toEqual(['fin']);
    expect(flows[1].info.rolesFromHandshake).toBe(true);
    table.processSegment(seg(true, 9001, 'two'), ts(3));
    expect(flows[1].stream(C2S)).toBe('two');
    expect(flows[0].stream(C2S)).toBe('one');
    expect(table.stats.portReuses).toBe(1);
  });

  it('starts a new flow when an open connection gets a SYN with a new ISN from its client', () => {
    const { table, flows } = setup();
    handshake(table, 100, 200, 1);
    table.processSegment(seg(true, 101, 'old'), ts(2));
    table.processSegment(seg(true, 100, '', SYN), ts(2)); // retransmitted SYN: same connection
    expect(flows).toHaveLength(1);
    table.processSegment(seg(true, 7000, '', SYN), ts(3));
    expect(flows).toHaveLength(2);
    expect(flows[0].closes().map((c) => c.reason)).toEqual(['timeout']);
    table.processSegment(seg(true, 7001, 'new'), ts(3));
    expect(flows[1].stream(C2S)).toBe('new');
  });

  describe('settled handlers are reported at the end of the connection', () => {
    /** A table whose handlers answer settled() with `answer()`. */
    function settledSetup(answer: () => boolean) {
      const flows: Recorder[] = [];
      const table = new TcpFlowTable(
        (info) => {
          const r = Object.assign(new Recorder(info), { settled: answer });
          flows.push(r);
          return r;
        },
        new Anomalies(),
        { closedTimeoutSec: 10 },
      );
      return { table, flows };
    }

    it('calls onClose as soon as both FINs are delivered, and absorbs the last ACK and a retransmission', () => {
      const { table, flows } = settledSetup(() => true);
      handshake(table, 100, 200, 1);
      table.processSegment(seg(true, 101, 'req', ACK), ts(2));
      table.processSegment(seg(false, 201, 'resp', FIN | ACK, { ack: 104 }), ts(2));
      expect(flows[0].closes()).toHaveLength(0); // one direction still open
      table.processSegment(seg(true, 104, '', FIN | ACK, { ack: 206 }), ts(3));
      expect(flows[0].closes().map((c) => c.reason)).toEqual(['fin']);
      expect(flows[0].closes()[0].counters.clientBytes).toBe(3);
      expect(table.stats.flowsClosed).toBe(1);
      table.processSegment(seg(false, 206, '', ACK, { ack: 105 }), ts(3)); // last ACK
      table.processSegment(seg(false, 201, 'resp', FIN | ACK, { ack: 104 }), ts(4)); // retransmission
      expect(flows).toHaveLength(1); // no new flow from the trailing packets
      expect(flows[0].closes()).toHaveLength(1);
      expect(flows[0].stream(S2C)).toBe('resp');
      table.expire(ts(20));
      table.closeAll();
      expect(flows[0].closes()).toHaveLength(1); // exactly once
      expect(table.activeFlows).toBe(0);
      expect(table.stats.flowsClosed).toBe(1);
    });

    it('waits for the closing timeout while a hole is open or the handler is not settled', () => {
      let ready = false;
      const { table, flows } = settledSetup(() => ready);
      handshake(table, 100, 200, 1);
      table.processSegment(seg(true, 101, '', FIN | ACK), ts(2));
      table.processSegment(seg(false, 201, '', FIN | ACK), ts(2));
      expect(flows[0].closes()).toHaveLength(0); // not settled
      ready = true;
      const e2 = ep('10.0.0.1', 2222, '10.0.0.2', 443);
      handshake(table, 100, 200, 3, e2);
      table.processSegment(seg(true, 101, 'ab', ACK, { ep: e2 }), ts(3));
      table.processSegment(seg(true, 105, 'ef', FIN | ACK, { ep: e2 }), ts(3)); // hole at 103..104
      table.processSegment(seg(false, 201, '', FIN | ACK, { ep: e2 }), ts(3));
      expect(flows[1].closes()).toHaveLength(0); // the hole may still be filled
      table.processSegment(seg(true, 103, 'cd', ACK, { ep: e2 }), ts(4));
      expect(flows[1].closes().map((c) => c.reason)).toEqual(['fin']);
      expect(flows[1].stream(C2S)).toBe('abcdef');
      expect(flows[0].closes()).toHaveLength(0);
      table.expire(ts(13));
      expect(flows[0].closes().map((c) => c.reason)).toEqual(['fin']);
    });

    it('reports a reset flow at once when settled; handlers without settled() keep the timeout', () => {
      const { table, flows } = settledSetup(() => true);
      handshake(table, 100, 200, 1);
      table.processSegment(seg(true, 101, 'x', RST | ACK), ts(2));
      expect(flows[0].closes().map((c) => c.reason)).toEqual(['rst']);
      const plain = setup({ closedTimeoutSec: 10 });
      handshake(plain.table, 100, 200, 1);
      plain.table.processSegment(seg(true, 101, '', FIN | ACK), ts(2));
      plain.table.processSegment(seg(false, 201, '', FIN | ACK), ts(2));
      expect(plain.flows[0].closes()).toHaveLength(0);
      plain.table.expire(ts(12));
      expect(plain.flows[0].closes().map((c) => c.reason)).toEqual(['fin']);
    });
  });

  it('treats a repeated SYN with the same ISN on a closing flow as a retransmission', () => {
    const { table, flows } = setup();
    handshake(table, 100, 200, 1);
    table.processSegment(seg(true, 101, '', FIN | ACK), ts(2));
    table.processSegment(seg(false, 201, '', FIN | ACK), ts(2));
    table.processSegment(seg(true, 100, '', SYN), ts(2));
    expect(flows).toHaveLength(1);
  });

  it('counts wire payload bytes including retransmissions, and packets per side', () => {
    const { table, flows } = setup();
    handshake(table, 0, 0);
    table.processSegment(seg(true, 1, 'abcd'), ts(2));
    table.processSegment(seg(true, 1, 'abcd'), ts(2));
    table.processSegment(seg(false, 1, 'xy', ACK, { payloadLen: 5 }), ts(2));
    table.closeAll();
    const c = flows[0].closes()[0].counters;
    expect(c).toMatchObject({ clientBytes: 8, serverBytes: 5, clientPackets: 4, serverPackets: 2, gapBytes: 3 });
  });
});

describe('tcp flow table: handler failures', () => {
  it('isolates a throwing handler: counted, its flow muted, other flows unaffected, onClose once', () => {
    const anomalies = new Anomalies();
    const recs: Recorder[] = [];
    let closes = 0;
    const table = new TcpFlowTable((info) => {
      const r = new Recorder(info);
      recs.push(r);
      if (info.clientPort === 1001) {
        r.onData = () => {
          throw new Error('boom in analyzer');
        };
        r.onClose = () => {
          closes++;
        };
      }
      return r;
    }, anomalies);
    const bad = ep('10.0.0.1', 1001, '10.0.0.2', 443);
    const good = ep('10.0.0.1', 1002, '10.0.0.2', 443);
    handshake(table, 0, 0, 1, bad);
    handshake(table, 0, 0, 1, good);
    expect(() => table.processSegment(seg(true, 1, 'x', ACK, { ep: bad }), ts(2))).not.toThrow();
    table.processSegment(seg(true, 2, 'y', ACK, { ep: bad }), ts(2));
    table.processSegment(seg(true, 1, 'fine', ACK, { ep: good }), ts(2));
    table.closeAll();
    expect(recs).toHaveLength(2);
    expect(recs[1].stream(C2S)).toBe('fine');
    expect(anomalies.count('handler_error')).toBe(1);
    expect(anomalies.details[anomalies.codes.indexOf('handler_error')]).toBe('boom in analyzer');
    expect(table.stats.handlerErrors).toBe(1);
    expect(closes).toBe(1);
  });

  it('survives a factory that throws and still tracks the flow', () => {
    const anomalies = new Anomalies();
    const table = new TcpFlowTable(() => {
      throw new Error('no handler');
    }, anomalies);
    handshake(table, 0, 0);
    table.processSegment(seg(true, 1, 'data'), ts(2));
    expect(table.activeFlows).toBe(1);
    expect(anomalies.count('handler_error')).toBe(1);
    table.closeAll();
    expect(table.activeFlows).toBe(0);
  });

  it('survives a handler whose onClose throws', () => {
    const anomalies = new Anomalies();
    const table = new TcpFlowTable((info) => {
      const r = new Recorder(info);
      r.onClose = () => {
        throw new Error('close failed');
      };
      return r;
    }, anomalies);
    handshake(table, 0, 0);
    expect(() => table.closeAll()).not.toThrow();
    expect(anomalies.count('handler_error')).toBe(1);
  });
});
