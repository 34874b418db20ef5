import { describe, expect, it } from 'vitest';
import { communityId } from '../../src/events/communityId.js';

// Vectors: Zeek's documentation of community_id_v1 and the spec repo's baseline
// (https://github.com/corelight/community-id-spec, baseline/baseline_deflt.json).
describe('communityId v1', () => {
  it('matches the published TCP example in both directions', () => {
    const a = Buffer.from([128, 232, 110, 120]);
    const b = Buffer.from([66, 35, 250, 204]);
    expect(communityId(a, 34855, b, 80, 6)).toBe('1:LQU9qZlK+B5F3KDmev6m5PMibrg=');
    expect(communityId(b, 80, a, 34855, 6)).toBe('1:LQU9qZlK+B5F3KDmev6m5PMibrg=');
  });

  it('orders equal addresses by port', () => {
    const a = Buffer.from([10, 0, 0, 1]);
    expect(communityId(a, 1000, a, 2000, 6)).toBe(communityId(a, 2000, a, 1000, 6));
    expect(communityId(a, 1000, a, 2000, 6)).not.toBe(communityId(a, 1000, a, 2001, 6));
  });

  it('hashes IPv6 addresses', () => {
    const a = Buffer.alloc(16);
    a[0] = 0xfd;
    a[15] = 1;
    const b = Buffer.from(a);
    b[15] = 2;
    expect(communityId(a, 1, b, 443, 6)).toMatch(/^1:[A-Za-z0-9+/]{27}=$/);
    expect(communityId(a, 1, b, 443, 6)).toBe(communityId(b, 443, a, 1, 6));
  });
});
