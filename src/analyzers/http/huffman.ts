/**
 * HPACK Huffman decoding (RFC 7541 Section 5.2 and Appendix B).
 *
 * The code table is written out as data (Appendix B: code right-aligned in `HUFFMAN_CODES`, its
 * bit length in `HUFFMAN_LENGTHS`, index = symbol, 256 = EOS). The decoder walks a binary tree
 * built once from that table; header strings are short, so a bit-at-a-time walk over a typed array
 * is fast enough and allocates nothing but the output string.
 */

/** Appendix B, column "code as hex aligned to LSB", symbols 0..256 (256 = EOS). */
export const HUFFMAN_CODES: readonly number[] = [
  0x1ff8, 0x7fffd8, 0xfffffe2, 0xfffffe3, 0xfffffe4, 0xfffffe5, 0xfffffe6, 0xfffffe7,
  0xfffffe8, 0xffffea, 0x3ffffffc, 0xfffffe9, 0xfffffea, 0x3ffffffd, 0xfffffeb, 0xfffffec,
  0xfffffed, 0xfffffee, 0xfffffef, 0xffffff0, 0xffffff1, 0xffffff2, 0x3ffffffe, 0xffffff3,
  0xffffff4, 0xffffff5, 0xffffff6, 0xffffff7, 0xffffff8, 0xffffff9, 0xffffffa, 0xffffffb,
  0x14, 0x3f8, 0x3f9, 0xffa, 0x1ff9, 0x15, 0xf8, 0x7fa,
  0x3fa, 0x3fb, 0xf9, 0x7fb, 0xfa, 0x16, 0x17, 0x18,
  0x0, 0x1, 0x2, 0x19, 0x1a, 0x1b, 0x1c, 0x1d,
  0x1e, 0x1f, 0x5c, 0xfb, 0x7ffc, 0x20, 0xffb, 0x3fc,
  0x1ffa, 0x21, 0x5d, 0x5e, 0x5f, 0x60, 0x61, 0x62,
  0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a,
  0x6b, 0x6c, 0x6d, 0x6e, 0x6f, 0x70, 0x71, 0x72,
  0xfc, 0x73, 0xfd, 0x1ffb, 0x7fff0, 0x1ffc, 0x3ffc, 0x22,
  0x7ffd, 0x3, 0x23, 0x4, 0x24, 0x5, 0x25, 0x26,
  0x27, 0x6, 0x74, 0x75, 0x28, 0x29, 0x2a, 0x7,
  0x2b, 0x76, 0x2c, 0x8, 0x9, 0x2d, 0x77, 0x78,
  0x79, 0x7a, 0x7b, 0x7ffe, 0x7fc, 0x3ffd, 0x1ffd, 0xffffffc,
  0xfffe6, 0x3fffd2, 0xfffe7, 0xfffe8, 0x3fffd3, 0x3fffd4, 0x3fffd5, 0x7fffd9,
  0x3fffd6, 0x7fffda, 0x7fffdb, 0x7fffdc, 0x7fffdd, 0x7fffde, 0xffffeb, 0x7fffdf,
  0xffffec, 0xffffed, 0x3fffd7, 0x7fffe0, 0xffffee, 0x7fffe1, 0x7fffe2, 0x7fffe3,
  0x7fffe4, 0x1fffdc, 0x3fffd8, 0x7fffe5, 0x3fffd9, 0x7fffe6, 0x7fffe7, 0xffffef,
  0x3fffda, 0x1fffdd, 0xfffe9, 0x3fffdb, 0x3fffdc, 0x7fffe8, 0x7fffe9, 0x1fffde,
  0x7fffea, 0x3fffdd, 0x3fffde, 0xfffff0, 0x1fffdf, 0x3fffdf, 0x7fffeb, 0x7fffec,
  0x1fffe0, 0x1fffe1, 0x3fffe0, 0x1fffe2, 0x7fffed, 0x3fffe1, 0x7fffee, 0x7fffef,
  0xfffea, 0x3fffe2, 0x3fffe3, 0x3fffe4, 0x7ffff0, 0x3fffe5, 0x3fffe6, 0x7ffff1,
  0x3ffffe0, 0x3ffffe1, 0xfffeb, 0x7fff1, 0x3fffe7, 0x7ffff2, 0x3fffe8, 0x1ffffec,
  0x3ffffe2, 0x3ffffe3, 0x3ffffe4, 0x7ffffde, 0x7ffffdf, 0x3ffffe5, 0xfffff1, 0x1ffffed,
  0x7fff2, 0x1fffe3, 0x3ffffe6, 0x7ffffe0, 0x7ffffe1, 0x3ffffe7, 0x7ffffe2, 0xfffff2,
  0x1fffe4, 0x1fffe5, 0x3ffffe8, 0x3ffffe9, 0xffffffd, 0x7ffffe3, 0x7ffffe4, 0x7ffffe5,
  0xfffec, 0xfffff3, 0xfffed, 0x1fffe6, 0x3fffe9, 0x1fffe7, 0x1fffe8, 0x7ffff3,
  0x3fffea, 0x3fffeb, 0x1ffffee, 0x1ffffef, 0xfffff4, 0xfffff5, 0x3ffffea, 0x7ffff4,
  0x3ffffeb, 0x7ffffe6, 0x3ffffec, 0x3ffffed, 0x7ffffe7, 0x7ffffe8, 0x7ffffe9, 0x7ffffea,
  0x7ffffeb, 0xffffffe, 0x7ffffec, 0x7ffffed, 0x7ffffee, 0x7ffffef, 0x7fffff0, 0x3ffffee,
  0x3fffffff,
];

/** Appendix B, column "len in bits", symbols 0..256. */
export const HUFFMAN_LENGTHS: readonly number[] = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28,
  28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8,
  11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12,
  10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
  8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5,
  6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22,
  22, 23, 22, 23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23,
  21, 22, 23, 22, 23, 23, 24, 22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24,
  21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22,
  23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19, 21,
  26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22,
  21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27,
  27, 28, 27, 27, 27, 27, 27, 26,
  30,
];

const EOS = 256;

/**
 * Decode tree: node n has children TREE[2n] (bit 0) and TREE[2n+1] (bit 1). A child value > 0 is
 * an inner node index, a value <= 0 is a leaf holding -(symbol), and NONE marks an unused branch
 * (cannot happen for this complete code, kept as a guard).
 */
const NONE = 0x7fffffff;
const TREE: Int32Array = buildTree();

function buildTree(): Int32Array {
  // A complete prefix code over 257 symbols has exactly 256 inner nodes.
  const tree = new Int32Array(2 * 256).fill(NONE);
  let next = 1;
  for (let sym = 0; sym <= EOS; sym++) {
    const code = HUFFMAN_CODES[sym];
    const len = HUFFMAN_LENGTHS[sym];
    let node = 0;
    for (let i = len - 1; i >= 0; i--) {
      const bit = (code / 2 ** i) & 1; // codes reach 30 bits: avoid sign trouble with >>>
      const slot = 2 * node + bit;
      if (i === 0) {
        tree[slot] = -sym;
      } else {
        if (tree[slot] === NONE) tree[slot] = next++;
        node = tree[slot];
      }
    }
  }
  return tree;
}

/** Scratch output for decoding; header strings are bounded by the caller's header-size cap. */
let scratch = Buffer.allocUnsafe(4096);

/**
 * Decodes a Huffman-coded string literal. Returns undefined when the input is invalid per RFC 7541
 * Section 5.2: an EOS symbol inside the string, padding longer than 7 bits, or padding that is not
 * the most significant bits of EOS (all ones). Output is decoded as UTF-8.
 */
export function huffmanDecode(src: Buffer, start: number, end: number): string | undefined {
  // Every symbol is at least 5 bits long: at most 8/5 output bytes per input byte.
  const maxOut = Math.ceil(((end - start) * 8) / 5);
  if (scratch.length < maxOut) scratch = Buffer.allocUnsafe(Math.max(maxOut, scratch.length * 2));
  const out = scratch;
  let o = 0;
  let node = 0;
  let pendingBits = 0; // bits consumed since the last complete symbol
  let pendingAllOnes = true;
  for (let p = start; p < end; p++) {
    const byte = src[p];
    for (let b = 7; b >= 0; b--) {
      const bit = (byte >> b) & 1;
      const child = TREE[2 * node + bit];
      if (child === NONE) return undefined;
      if (child <= 0) {
        const sym = -child;
        if (sym === EOS) return undefined;
        out[o++] = sym;
        node = 0;
        pendingBits = 0;
        pendingAllOnes = true;
      } else {
        node = child;
        pendingBits++;
        if (bit === 0) pendingAllOnes = false;
      }
    }
  }
  if (pendingBits > 7 || !pendingAllOnes) return undefined;
  return out.toString('utf8', 0, o);
}

/** Huffman-encodes a string (RFC 7541 Section 5.2); used by tests and tools, not the hot path. */
export function huffmanEncode(s: string | Buffer): Buffer {
  const src = typeof s === 'string' ? Buffer.from(s, 'utf8') : s;
  const bytes: number[] = [];
  let acc = 0;
  let bits = 0;
  for (const c of src) {
    const code = HUFFMAN_CODES[c];
    const len = HUFFMAN_LENGTHS[c];
    for (let i = len - 1; i >= 0; i--) {
      acc = (acc << 1) | ((code / 2 ** i) & 1);
      bits++;
      if (bits === 8) {
        bytes.push(acc);
        acc = 0;
        bits = 0;
      }
    }
  }
  if (bits > 0) bytes.push(((acc << (8 - bits)) | (0xff >> bits)) & 0xff);
  return Buffer.from(bytes);
}
