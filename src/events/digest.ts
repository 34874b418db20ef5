/**
 * One-shot digest as a string, for the ids and hashes built per event (event.id, Community ID,
 * fingerprints): node's `crypto.hash` (Node >= 20.12) takes about half the time of
 * `createHash().update().digest()`, whose cost at these sizes is the Hash object. Falls back to
 * createHash on older Node 20. Strings are hashed as UTF-8 either way.
 */
import * as nodeCrypto from 'node:crypto';

type Encoding = 'hex' | 'base64' | 'base64url';
type OneShot = (algorithm: string, data: string | Buffer, outputEncoding: Encoding) => string;
const oneShot = (nodeCrypto as unknown as { hash?: OneShot }).hash;

export function digest(algorithm: 'md5' | 'sha1' | 'sha256', data: string | Buffer, encoding: Encoding): string {
  if (oneShot) return oneShot(algorithm, data, encoding);
  return nodeCrypto.createHash(algorithm).update(data).digest(encoding);
}
