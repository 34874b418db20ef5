/**
 * A receive thread of `publish mirror --threads N` (src/kafka/mirrorThreads.ts): reads its own
 * descriptors of the receiver's sockets, decapsulates and partitions each datagram, and hands the
 * inner packets to the main thread in chunks, with their sequence numbers.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { runMirrorThread, type MirrorThreadConfig } from '../src/kafka/mirrorThreads.js';

await runMirrorThread(workerData as MirrorThreadConfig, parentPort!);
