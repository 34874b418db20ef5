/**
 * A Map that forgets everything when a new key would take it past `max` entries: the bound of
 * the memo caches of pure functions on the per-session path (certificate summaries, fingerprints,
 * detector verdicts). Clearing at once is cheaper than any eviction order and the working set of
 * such inputs (names, suites, user agents, client stacks) refills it within a few sessions.
 */
export class BoundedMap<K, V> extends Map<K, V> {
  constructor(readonly max: number) {
    super();
  }

  override set(key: K, value: V): this {
    if (this.size >= this.max && !this.has(key)) this.clear();
    return super.set(key, value);
  }

  /**
   * The value remembered for `key`, else `compute(key)`, remembered. `undefined` means "not
   * remembered": a function whose answer can be "none" remembers it as `null`.
   */
  remember(key: K, compute: (key: K) => V): V {
    let v = this.get(key);
    if (v === undefined) {
      v = compute(key);
      this.set(key, v);
    }
    return v;
  }
}
