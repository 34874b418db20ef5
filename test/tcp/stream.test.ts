import { describe, expect, it } from 'vitest';
import type { Dir, FlowHandler } from '../../src/types.js';
import { TcpFlowTable } from '../../src/tcp/index.js';
import { ACK, Anomalies, FIN, PSH, RST, SYN, handshake, seg, setup, ts } from './helpers.js';

const C2S = 0 as Dir;
const S2C = 1 as Dir;

describe('tcp reassembly: ordering', () => {
  it('delivers in-order data immediately as the packet payload view (no copy)', () => {
    const seen: Buffer[] = [];
    const h: FlowHandler = {
      onData: (_d, b) => seen.push(b),
      onGap: () => {},
      onEnd: () => {},
      onClose: () => {},
    };
    const table = new TcpFlowTable(() => h, new Anomalies());
    handshake(table, 1000, 5000);
    const p = seg(true, 1001, 'hello', ACK | PSH);
    table.processSegment(p, ts(2));
    expect(seen).toHaveLength(1);
    expect(seen[0]).toBe(p.payload);
  });

  it('delivers in-order segments of both directions', () => {
    const { table, flows } = setup();
    handshake(table, 1000, 5000);
    table.processSegment(seg(true, 1001, 'GET / ', ACK, { ack: 5001 }), ts(2));
    table.processSegment(seg(true, 1007, 'HTTP', ACK, { ack: 5001 }), ts(2));
    table.processSegment(seg(false, 5001, '200 OK', ACK, { ack: 1011 }), ts(2));
    expect(flows).toHaveLength(1);
    expect(flows[0].stream(C2S)).toBe('GET / HTTP');
    expect(flows[0].stream(S2C)).toBe('200 OK');
  });

  it('reassembles segments received in reverse order', () => {
    const { table, flows, anomalies } = setup();
    handshake(table, 1000, 5000);
    const text = 'abcdefghijklmnopqrstuvwxyz';
    for (let i = text.length - 2; i >= 0; i -= 2) table.processSegment(seg(true, 1001 + i, text.slice(i, i + 2)), ts(2));
    expect(flows[0].stream(C2S)).toBe(text);
    expect(table.stats.outOfOrderSegments).toBe(12);
    expect(table.stats.bufferedBytes).toBe(0);
    expect(anomalies.codes).toEqual([]);
  });

  it('drops retransmitted bytes and counts them', () => {
    const { table, flows } = setup();
    handshake(table, 1000, 5000);
    table.processSegment(seg(true, 1001, 'abcdef'), ts(2));
    table.processSegment(seg(true, 1001, 'abcdef'), ts(2));
    table.processSegment(seg(true, 1004, 'defghi'), ts(2));
    expect(flows[0].stream(C2S)).toBe('abcdefghi');
    expect(table.stats.retransmittedBytes).toBe(9);
  });

  it('handles sequence numbers wrapping around 2^32', () => {
    const { table, flows } = setup();
    const isn = 0xfffffff8;
    handshake(table, isn, 7);
    // bytes 0..9 sit at seq 0xfffffff9 .. 0x00000002
    table.processSegment(seg(true, 0x00000001, 'ij'), ts(2));
    table.processSegment(seg(true, 0xfffffffd, 'efgh'), ts(2));
    table.processSegment(seg(true, 0xfffffff9, 'abcd'), ts(2));
    table.processSegment(seg(true, 0x00000001, 'ijKL'), ts(2));
    expect(flows[0].stream(C2S)).toBe('abcdefghijKL');
    expect(flows[0].gaps(C2S)).toEqual([]);
  });

  it('starts a mid-stream direction at its first data segment without reporting a gap', () => {
    const { table, flows } = setup();
    table.processSegment(seg(true, 123456, 'middle'), ts(1));
    table.processSegment(seg(false, 999, 'reply'), ts(1));
    table.processSegment(seg(true, 123462, '-more'), ts(1));
    expect(flows[0].stream(C2S)).toBe('middle-more');
    expect(flows[0].stream(S2C)).toBe('reply');
    expect(table.stats.gaps).toBe(0);
  });

  it('carries data in a SYN (TCP Fast Open) after the SYN sequence number', () => {
    const { table, flows } = setup();
    table.processSegment(seg(true, 100, 'tfo', SYN), ts(1));
    table.processSegment(seg(true, 104, 'rest'), ts(1));
    expect(flows[0].stream(C2S)).toBe('tforest');
  });
});

describe('tcp reassembly: overlaps (first-wins)', () => {
  it('keeps buffered bytes when an in-order segment overlaps them with different content', () => {
    const { table, flows, anomalies } = setup();
    handshake(table, 0, 0);
    table.processSegment(seg(true, 6, 'XYZ'), ts(2)); // bytes 5..7, buffered first
    table.processSegment(seg(true, 1, 'abcdefghij'), ts(2)); // bytes 0..9, differs at 5..7
    expect(flows[0].stream(C2S)).toBe('abcdeXYZij');
    expect(anomalies.count('tcp_overlap_conflict')).toBe(1);
    expect(table.stats.overlapConflicts).toBe(1);
  });

  it('keeps the first out-of-order copy when a later out-of-order copy differs', () => {
    const { table, flows, anomalies } = setup();
    handshake(table, 0, 0);
    table.processSegment(seg(true, 4, 'defg'), ts(2));
    table.processSegment(seg(true, 6, 'FGHI'), ts(2));
    table.processSegment(seg(true, 1, 'abc'), ts(2));
    expect(flows[0].stream(C2S)).toBe('abcdefgHI');
    expect(anomalies.count('tcp_overlap_conflict')).toBe(1);
  });

  it('does not flag identical overlapping copies', () => {
    const { table, flows, anomalies } = setup();
    handshake(table, 0, 0);
    table.processSegment(seg(true, 4, 'defg'), ts(2));
    table.processSegment(seg(true, 3, 'cdefgh'), ts(2));
    table.processSegment(seg(true, 1, 'abcd'), ts(2));
    expect(flows[0].stream(C2S)).toBe('abcdefgh');
    expect(anomalies.count('tcp_overlap_conflict')).toBe(0);
  });

  it('fills several holes from one segment spanning buffered pieces', () => {
    const { table, flows } = setup();
    handshake(table, 0, 0);
    table.processSegment(seg(true, 3, 'c'), ts(2));
    table.processSegment(seg(true, 6, 'f'), ts(2));
    table.processSegment(seg(true, 9, 'i'), ts(2));
    table.processSegment(seg(true, 1, 'abcdefghij'), ts(2));
    expect(flows[0].stream(C2S)).toBe('abcdefghij');
    expect(table.stats.bufferedBytes).toBe(0);
  });
});

describe('tcp reassembly: gaps', () => {
  it('declares a lost segment a gap when the peer acknowledges past it', () => {
    const { table, flows, anomalies } = setup();
    handshake(table, 0, 0);
    table.processSegment(seg(true, 1, '0123456789'), ts(2));
    // bytes 10..19 lost by the capture
    table.processSegment(seg(true, 21, 'KLMNOPQRST'), ts(2));
    expect(flows[0].stream(C2S)).toBe('0123456789');
    table.processSegment(seg(false, 1, '', ACK, { ack: 31 }), ts(2));
    expect(flows[0].stream(C2S)).toBe('0123456789' + '?'.repeat(10) + 'KLMNOPQRST');
    expect(flows[0].gaps(C2S)).toEqual([10]);
    expect(anomalies.count('tcp_capture_loss')).toBe(1);
    table.processSegment(seg(true, 31, 'after'), ts(2));
    expect(flows[0].stream(C2S).endsWith('KLMNOPQRSTafter')).toBe(true);
  });

  it('declares only the acknowledged part of a hole when the ACK stops inside it', () => {
    const { table, flows } = setup();
    handshake(table, 0, 0);
    table.processSegment(seg(true, 21, 'later'), ts(2));
    table.processSegment(seg(false, 1, '', ACK, { ack: 11 }), ts(2));
    expect(flows[0].gaps(C2S)).toEqual([10]);
    table.processSegment(seg(true, 11, '0123456789'), ts(2));
    expect(flows[0].stream(C2S)).toBe('?'.repeat(10) + '0123456789later');
  });

  it('declares the hole before a FIN a gap when the peer acknowledges the FIN', () => {
    const { table, flows } = setup();
    handshake(table, 0, 0);
    table.processSegment(seg(true, 11, '', ACK | FIN), ts(2)); // bytes 0..9 lost
    expect(flows[0].ends()).toEqual([]);
    table.processSegment(seg(false, 1, '', ACK, { ack: 12 }), ts(2));
    expect(flows[0].gaps(C2S)).toEqual([10]);
    expect(flows[0].ends()).toEqual([[C2S, 'fin']]);
  });

  it('does not declare a gap from an ACK when nothing is buffered', () => {
    const { table, flows } = setup();
    handshake(table, 0, 0);
    table.processSegment(seg(false, 1, '', ACK, { ack: 50 }), ts(2));
    table.processSegment(seg(true, 1, 'abc'), ts(2));
    expect(flows[0].stream(C2S)).toBe('abc');
  });

  it('delivers the captured part of a snapped segment, then a gap for the rest', () => {
    const { table, flows, anomalies } = setup();
    handshake(table, 0, 0);
    table.processSegment(seg(true, 1, 'abcd', ACK, { payloadLen: 10 }), ts(2));
    table.processSegment(seg(true, 11, 'next'), ts(2));
    expect(flows[0].stream(C2S)).toBe('abcd??????next');
    expect(flows[0].gaps(C2S)).toEqual([6]);
    expect(anomalies.count('tcp_snapped_segment')).toBe(1);
  });

  it('turns the missing part of a snapped out-of-order segment into a gap in place', () => {
    const { table, flows } = setup();
    handshake(table, 0, 0);
    table.processSegment(seg(true, 11, 'ABCD', ACK, { payloadLen: 10 }), ts(2));
    table.processSegment(seg(true, 21, 'tail'), ts(2));
    table.processSegment(seg(true, 1, '0123456789'), ts(2));
    expect(flows[0].stream(C2S)).toBe('0123456789ABCD??????tail');
  });

  it('skips ahead with a gap when a direction buffers more than its limit', () => {
    const { table, flows, anomalies } = setup({ maxBufferedPerDirection: 20 });
    handshake(table, 0, 0);
    table.processSegment(seg(true, 11, 'aaaaaaaaaa'), ts(2));
    table.processSegment(seg(true, 21, 'bbbbbbbbbb'), ts(2));
    expect(flows[0].stream(C2S)).toBe('');
    table.processSegment(seg(true, 31, 'cccccccccc'), ts(2));
    expect(flows[0].stream(C2S)).toBe('?'.repeat(10) + 'aaaaaaaaaabbbbbbbbbbcccccccccc');
    expect(anomalies.count('tcp_buffer_limit')).toBe(1);
    expect(table.stats.bufferLimitHits).toBe(1);
    expect(table.stats.bufferedBytes).toBe(0);
  });

  it('skips ahead when a direction buffers more pieces than its limit', () => {
    const { table, flows } = setup({ maxSegmentsPerDirection: 3 });
    handshake(table, 0, 0);
    for (const s of [3, 5, 7, 9]) table.processSegment(seg(true, s, 'x'), ts(2));
    // Over 3 pieces: skip to the first (gap 2), deliver it, then 3 pieces remain (within the limit).
    expect(flows[0].stream(C2S)).toBe('??x');
    table.processSegment(seg(true, 4, 'y'), ts(2));
    expect(flows[0].stream(C2S)).toBe('??xyx');
  });

  it('flushes the largest buffers as gaps when the total budget is exceeded', () => {
    const { table, flows, anomalies } = setup({ maxBufferedTotal: 25 });
    const ep2 = { a: Buffer.from([10, 0, 0, 3]), aPort: 40001, b: Buffer.from([10, 0, 0, 2]), bPort: 443 };
    handshake(table, 0, 0);
    handshake(table, 0, 0, 1, ep2);
    table.processSegment(seg(true, 6, 'small', ACK, { ep: ep2 }), ts(2));
    table.processSegment(seg(true, 11, 'big-big-big-big-big-big', ACK), ts(2));
    const [f1, f2] = flows;
    expect(f1.stream(C2S)).toBe('??????????big-big-big-big-big-big');
    expect(f2.stream(C2S)).toBe('');
    expect(anomalies.count('tcp_total_buffer_limit')).toBe(1);
    expect(table.stats.bufferedBytes).toBe(5);
  });

  it('drops segments too far ahead of the stream instead of declaring a huge gap', () => {
    const { table, flows, anomalies } = setup();
    handshake(table, 0, 0);
    table.processSegment(seg(true, 0x60000000, 'junk'), ts(2));
    table.processSegment(seg(true, 1, 'ok'), ts(2));
    table.closeAll();
    expect(flows[0].stream(C2S)).toBe('ok');
    expect(anomalies.count('tcp_seq_out_of_window')).toBe(1);
  });
});

describe('tcp reassembly: end of streams', () => {
  it('sends onEnd(fin) only after the bytes before the FIN arrived', () => {
    const { table, flows } = setup();
    handshake(table, 0, 0);
    table.processSegment(seg(true, 6, 'world', ACK | FIN), ts(2));
    expect(flows[0].ends()).toEqual([]);
    table.processSegment(seg(true, 1, 'hello'), ts(2));
    expect(flows[0].stream(C2S)).toBe('helloworld');
    expect(flows[0].ends()).toEqual([[C2S, 'fin']]);
    expect(flows[0].events.at(-1)).toEqual({ t: 'end', dir: C2S, reason: 'fin' });
  });

  it('drops data beyond the FIN', () => {
    const { table, flows } = setup();
    handshake(table, 0, 0);
    table.processSegment(seg(true, 1, 'abc', ACK | FIN), ts(2));
    table.processSegment(seg(true, 4, 'evil'), ts(2));
    expect(flows[0].stream(C2S)).toBe('abc');
    expect(table.stats.dataAfterEnd).toBe(4);
  });

  it('closes with fin after both FINs once closedTimeoutSec passed, absorbing trailing packets', () => {
    const { table, flows } = setup({ closedTimeoutSec: 10 });
    handshake(table, 0, 0);
    table.processSegment(seg(true, 1, 'q', ACK | FIN), ts(2));
    table.processSegment(seg(false, 1, 'r', ACK | FIN, { ack: 3 }), ts(3));
    table.processSegment(seg(true, 3, '', ACK, { ack: 3 }), ts(4)); // last ACK
    expect(flows).toHaveLength(1);
    expect(flows[0].closes()).toHaveLength(0);
    table.expire(ts(12));
    expect(flows[0].closes()).toHaveLength(0);
    table.expire(ts(13));
    const closes = flows[0].closes();
    expect(closes).toHaveLength(1);
    expect(closes[0].reason).toBe('fin');
    expect(closes[0].counters).toMatchObject({ clientBytes: 1, serverBytes: 1, clientPackets: 4, serverPackets: 2, gapBytes: 0 });
    expect(closes[0].counters.last).toEqual(ts(4));
    expect(flows[0].ends()).toEqual([[C2S, 'fin'], [S2C, 'fin']]);
    expect(table.activeFlows).toBe(0);
  });

  it('on RST flushes buffered data with gaps, ends both directions and closes with rst', () => {
    const { table, flows } = setup({ closedTimeoutSec: 5 });
    handshake(table, 0, 0);
    table.processSegment(seg(true, 1, 'ab'), ts(2));
    table.processSegment(seg(true, 6, 'fg'), ts(2));
    table.processSegment(seg(false, 1, '', RST), ts(3));
    const f = flows[0];
    expect(f.stream(C2S)).toBe('ab???fg');
    expect(f.ends()).toEqual([[C2S, 'rst'], [S2C, 'rst']]);
    expect(f.closes()).toHaveLength(0);
    table.processSegment(seg(true, 8, 'late'), ts(4)); // after RST: no new flow, nothing delivered
    expect(flows).toHaveLength(1);
    table.expire(ts(8));
    expect(f.closes().map((c) => c.reason)).toEqual(['rst']);
    expect(f.closes()[0].counters.gapBytes).toBe(3);
  });

  it('closeAll flushes holes as gaps and closes every flow with eof', () => {
    const { table, flows } = setup();
    handshake(table, 0, 0);
    table.processSegment(seg(true, 1, 'ab'), ts(2));
    table.processSegment(seg(true, 5, 'ef'), ts(2));
    table.processSegment(seg(false, 11, 'zz'), ts(2)); // server bytes 10..11, 0..9 never seen
    table.closeAll(ts(9));
    const f = flows[0];
    expect(f.stream(C2S)).toBe('ab??ef');
    expect(f.stream(S2C)).toBe('??????????zz');
    expect(f.ends()).toEqual([[C2S, 'eof'], [S2C, 'eof']]);
    expect(f.closes()).toHaveLength(1);
    expect(f.closes()[0].reason).toBe('eof');
    expect(f.closes()[0].ts).toEqual(ts(9));
    expect(table.activeFlows).toBe(0);
    expect(table.stats.bufferedBytes).toBe(0);
  });

  it('at closeAll turns the hole before a seen FIN into a gap and ends with fin', () => {
    const { table, flows } = setup();
    handshake(table, 0, 0);
    table.processSegment(seg(true, 4, 'def', ACK | FIN), ts(2));
    table.closeAll();
    expect(flows[0].stream(C2S)).toBe('???def');
    expect(flows[0].ends()).toContainEqual([C2S, 'fin']);
  });
});

describe('tcp reassembly: order across the two directions (ACK-based holds)', () => {
  /** The recorder's data/gap/end events as "dir:text" strings, in delivery order. */
  const order = (r: { events: { t: string; dir?: Dir; bytes?: Buffer; len?: number; reason?: string }[] }): string[] =>
    r.events.flatMap((e) =>
      e.t === 'data' ? [`${e.dir}:${e.bytes!.toString('latin1')}`] : e.t === 'gap' ? [`${e.dir}:gap${e.len}`] : e.t === 'end' ? [`${e.dir}:end`] : [],
    );

  it('a response that arrives before its request is delivered after it', () => {
    const { table, flows, anomalies } = setup();
    handshake(table, 1000, 5000);
    // the server's answer acknowledges the 6 request bytes (1001..1006) not yet seen
    table.processSegment(seg(false, 5001, '200 OK', ACK | PSH, { ack: 1007 }), ts(2));
    expect(order(flows[0])).toEqual([]);
    table.processSegment(seg(true, 1001, 'GET /x', ACK | PSH, { ack: 5001 }), ts(2));
    expect(order(flows[0])).toEqual(['0:GET /x', '1:200 OK']);
    expect(table.stats.crossDirHolds).toBe(1);
    expect(table.stats.crossDirHoldsExpired).toBe(0);
    expect(table.stats.bufferedBytes).toBe(0);
    expect(anomalies.codes).toEqual([]);
  });

  it('releases a hold step by step as the other direction catches up, keeping each direction in order', () => {
    const { table, flows } = setup();
    handshake(table, 1000, 5000);
    table.processSegment(seg(false, 5001, 'A', ACK, { ack: 1004 }), ts(2)); // needs client bytes up to 1003
    table.processSegment(seg(false, 5002, 'B', ACK, { ack: 1001 }), ts(2)); // queued behind A (never overtakes it)
    table.processSegment(seg(false, 5003, 'C', ACK, { ack: 1007 }), ts(2)); // needs up to 1006
    table.processSegment(seg(true, 1001, 'abc', ACK, { ack: 5001 }), ts(2));
    expect(order(flows[0])).toEqual(['0:abc', '1:A', '1:B']);
    table.processSegment(seg(true, 1004, 'def', ACK, { ack: 5001 }), ts(2));
    expect(order(flows[0])).toEqual(['0:abc', '1:A', '1:B', '0:def', '1:C']);
    expect(table.stats.crossDirHolds).toBe(1);
  });

  it('a hold on bytes the capture lost ends when a gap is declared over them (gap first, then the held data)', () => {
    const { table, flows, anomalies } = setup();
    handshake(table, 1000, 5000);
    table.processSegment(seg(true, 1005, 'efgh', ACK, { ack: 5001 }), ts(2)); // client bytes 1001..1004 lost
    // the server acknowledges all 8 client bytes: 1001..1004 were sent, so they are a gap
    table.processSegment(seg(false, 5001, 'reply', ACK, { ack: 1009 }), ts(2));
    expect(order(flows[0])).toEqual(['0:gap4', '0:efgh', '1:reply']);
    expect(anomalies.count('tcp_capture_loss')).toBe(1);
    expect(table.stats.crossDirHoldsExpired).toBe(0);
  });

  it('the other side ending releases the hold before its own end, counted as expired', () => {
    const { table, flows, anomalies } = setup();
    handshake(table, 1000, 5000);
    table.processSegment(seg(false, 5001, 'reply', ACK, { ack: 1011 }), ts(2)); // 10 client bytes never captured
    table.processSegment(seg(true, 1011, '', RST), ts(2));
    expect(order(flows[0])).toEqual(['1:reply', '0:end', '1:end']);
    expect(anomalies.count('tcp_crossdir_hold_expired')).toBe(1);
    expect(table.stats.crossDirHoldsExpired).toBe(1);
    expect(table.stats.bufferedBytes).toBe(0);
  });

  it('a hold lasts at most 2 s of capture time (checked on the flow\'s packets)', () => {
    const { table, flows, anomalies } = setup();
    handshake(table, 1000, 5000);
    table.processSegment(seg(false, 5001, 'one', ACK, { ack: 1011 }), ts(2));
    table.processSegment(seg(false, 5004, 'two', ACK, { ack: 1011 }), ts(3));
    table.processSegment(seg(true, 1011, '', ACK, { ack: 5007 }), ts(4)); // 2 s: not yet
    expect(order(flows[0])).toEqual([]);
    table.processSegment(seg(true, 1011, '', ACK, { ack: 5007 }), ts(4, 100)); // over 2 s
    expect(order(flows[0])).toEqual(['1:one', '1:two']);
    expect(anomalies.count('tcp_crossdir_hold_expired')).toBe(1);
    // the other side's capture is evidently lossy: this direction is not held again
    table.processSegment(seg(false, 5007, 'three', ACK, { ack: 1011 }), ts(5));
    expect(order(flows[0])).toEqual(['1:one', '1:two', '1:three']);
  });

  it('held bytes are bounded by maxBufferedPerDirection', () => {
    const { table, flows, anomalies } = setup({ maxBufferedPerDirection: 10 });
    handshake(table, 1000, 5000);
    table.processSegment(seg(false, 5001, '123456', ACK, { ack: 1011 }), ts(2));
    expect(order(flows[0])).toEqual([]);
    table.processSegment(seg(false, 5007, '789abc', ACK, { ack: 1011 }), ts(2));
    expect(order(flows[0])).toEqual(['1:123456', '1:789abc']);
    expect(anomalies.count('tcp_crossdir_hold_expired')).toBe(1);
    expect(table.stats.bufferedBytes).toBe(0);
  });

  it('never holds when the other direction was not seen (one-sided capture, or its start unseen)', () => {
    const { table, flows } = setup();
    table.processSegment(seg(false, 5001, 'only the server', ACK, { ack: 123456 }), ts(1));
    expect(order(flows[0])).toEqual(['1:only the server']);
    expect(table.stats.crossDirHolds).toBe(0);
  });

  it('an ACK implausibly far ahead (over 16 MiB) does not hold', () => {
    const { table, flows } = setup();
    handshake(table, 1000, 5000);
    table.processSegment(seg(false, 5001, 'x', ACK, { ack: 1001 + 20 * 1024 * 1024 }), ts(2));
    expect(order(flows[0])).toEqual(['1:x']);
  });

  it('the end of input delivers what is still held, in order, before onClose', () => {
    const { table, flows } = setup();
    handshake(table, 1000, 5000);
    table.processSegment(seg(false, 5001, 'late', ACK | FIN, { ack: 1011 }), ts(2));
    table.closeAll();
    expect(order(flows[0])).toEqual(['1:late', '1:end', '0:end']);
    expect(flows[0].events[flows[0].events.length - 1].t).toBe('close');
  });

  it('any interleaving of two in-order directions reaches the handler in causal order', () => {
    // a request/response conversation: each segment acknowledges everything the other side sent before it
    const turns = [['c', 'hello'], ['s', 'HI'], ['s', 'THERE'], ['c', 'get a'], ['s', 'A!'], ['c', 'get b'], ['c', 'and c'], ['s', 'B+C']];
    const segs: { fromClient: boolean; seq: number; ack: number; text: string }[] = [];
    let cs = 1001;
    let ss = 5001;
    for (const [who, text] of turns) {
      const fromClient = who === 'c';
      segs.push({ fromClient, seq: fromClient ? cs : ss, ack: fromClient ? ss : cs, text });
      if (fromClient) cs += text.length;
      else ss += text.length;
    }
    const causal = segs.map((s) => `${s.fromClient ? 0 : 1}:${s.text}`);
    const client = segs.filter((s) => s.fromClient);
    const server = segs.filter((s) => !s.fromClient);
    // every merge of the two sequences (each kept in order): C(8,4) = 70
    let merges = 0;
    const walk = (i: number, j: number, acc: typeof segs): void => {
      if (i === client.length && j === server.length) {
        merges++;
        const { table, flows, anomalies } = setup();
        handshake(table, 1000, 5000);
        for (const s of acc) table.processSegment(seg(s.fromClient, s.seq, s.text, ACK | PSH, { ack: s.ack }), ts(2));
        expect(order(flows[0]), acc.map((s) => s.text).join(',')).toEqual(causal);
        expect(anomalies.codes).toEqual([]);
        return;
      }
      if (i < client.length) walk(i + 1, j, [...acc, client[i]]);
      if (j < server.length) walk(i, j + 1, [...acc, server[j]]);
    };
    walk(0, 0, []);
    expect(merges).toBe(70);
  });
});
