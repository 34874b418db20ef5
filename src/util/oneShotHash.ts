/**
 * node's one-shot `crypto.hash(algorithm, data, outputEncoding)` (Node >= 20.12), or undefined on
 * older Node 20, where callers fall back to createHash / createHmac. At the few dozen bytes of
 * per-session ids and key-schedule HMACs it costs about half of createHash().update().digest(),
 * whose cost at these sizes is the Hash object.
 */
import * as nodeCrypto from 'node:crypto';

export type OneShotEncoding = 'hex' | 'base64' | 'base64url' | 'latin1';
type OneShot = (algorithm: string, data: string | Buffer, outputEncoding: OneShotEncoding) => string;

export const oneShotHash: OneShot | undefined = (nodeCrypto as unknown as { hash?: OneShot }).hash;
