/**
 * Runs tasks in the order of their sequence numbers (0, 1, 2, ...) whatever order they arrive in.
 * Piscina may start queued tasks of a one-thread pool out of submission order, and a shard's
 * tasks must reach its engine in order: a task that arrives early waits here until its
 * predecessors have run. Used by the `run` shard worker (workers/stream-shard.ts).
 */
export class InOrder<T> {
  private next = 0;
  private readonly early = new Map<number, T>();

  /** Accepts task `seq` and runs, through `run`, every task that is now due, in order. */
  offer(seq: number, task: T, run: (t: T) => void): void {
    this.early.set(seq, task);
    for (let t = this.early.get(this.next); t !== undefined; t = this.early.get(this.next)) {
      this.early.delete(this.next++);
      run(t);
    }
  }
}
