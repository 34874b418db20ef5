import { describe, expect, it } from 'vitest';
import { InOrder } from '../../src/pipeline/inOrder.js';

describe('InOrder: shard tasks run in sequence order whatever order they arrive in', () => {
  it('holds early tasks until their predecessors have run', () => {
    const order = new InOrder<string>();
    const ran: string[] = [];
    const run = (t: string): void => void ran.push(t);
    order.offer(2, 'c', run);
    order.offer(1, 'b', run);
    expect(ran).toEqual([]);
    order.offer(0, 'a', run);
    expect(ran).toEqual(['a', 'b', 'c']);
    order.offer(4, 'e', run);
    order.offer(3, 'd', run);
    expect(ran).toEqual(['a', 'b', 'c', 'd', 'e']);
  });
});
