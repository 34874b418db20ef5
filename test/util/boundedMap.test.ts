import { describe, expect, it } from 'vitest';
import { BoundedMap } from '../../src/util/boundedMap.js';

describe('BoundedMap: the bound of the memo caches', () => {
  it('forgets everything when a new key would pass the bound, keeps updating existing keys', () => {
    const m = new BoundedMap<string, number>(3);
    m.set('a', 1).set('b', 2).set('c', 3);
    m.set('b', 20); // existing key: no clearing
    expect([...m.entries()]).toEqual([['a', 1], ['b', 20], ['c', 3]]);
    m.set('d', 4); // a fourth key: cleared first
    expect([...m.entries()]).toEqual([['d', 4]]);
    expect(m.size).toBeLessThanOrEqual(m.max);
  });

  it('remembers a computed value once, null as an answer too, within the same bound', () => {
    const m = new BoundedMap<string, string | null>(2);
    let calls = 0;
    const f = (k: string): string | null => (calls++, k === 'none' ? null : k.toUpperCase());
    expect(m.remember('a', f)).toBe('A');
    expect(m.remember('a', f)).toBe('A');
    expect(m.remember('none', f)).toBeNull();
    expect(m.remember('none', f)).toBeNull();
    expect(calls).toBe(2);
    expect(m.remember('b', f)).toBe('B'); // a third key: cleared first
    expect([...m.keys()]).toEqual(['b']);
    expect(calls).toBe(3);
  });
});
