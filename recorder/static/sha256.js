// SHA-256 (FIPS 180-4) that can be fed a file piece by piece and whose state survives a page reload.
//
// WebCrypto's crypto.subtle.digest hashes one buffer at once; a recording grows for hours and the page may be
// reloaded half-way, so the recorder hashes the file in order as it is written and keeps this hash's state
// (`save()`: eight words, the unprocessed tail of under 64 bytes and the byte count, all plain JSON) in
// IndexedDB beside the bytes it has seen. `Sha256.restore(saved)` continues where `save()` left off.

const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);
const INITIAL = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
const BLOCK = 64;

export class Sha256 {
  constructor() {
    this.h = new Uint32Array(INITIAL);
    this.tail = new Uint8Array(BLOCK); // bytes waiting for a whole block
    this.tailLength = 0;
    this.length = 0; // bytes hashed so far (exact up to 2**53)
    this.w = new Uint32Array(64);
  }

  /** Hash `bytes` (a Uint8Array, ArrayBuffer or view) after everything before. Returns this. */
  update(bytes) {
    const data = toBytes(bytes);
    let at = 0;
    this.length += data.length;
    if (this.tailLength > 0) {
      const take = Math.min(BLOCK - this.tailLength, data.length);
      this.tail.set(data.subarray(0, take), this.tailLength);
      this.tailLength += take;
      at = take;
      if (this.tailLength < BLOCK) return this;
      this.compress(this.tail, 0);
      this.tailLength = 0;
    }
    for (; at + BLOCK <= data.length; at += BLOCK) this.compress(data, at);
    this.tail.set(data.subarray(at), 0);
    this.tailLength = data.length - at;
    return this;
  }

  /** The lower-case hex digest of everything so far; the hash can go on being updated afterwards. */
  hex() {
    const copy = Sha256.restore(this.save());
    const pad = new Uint8Array((copy.tailLength < 56 ? 64 : 128) - copy.tailLength);
    pad[0] = 0x80;
    const end = pad.length;
    const high = Math.floor(copy.length / 0x20000000); // length * 8 >> 32, without losing bits
    const low = (copy.length % 0x20000000) * 8;
    const view = new DataView(pad.buffer);
    view.setUint32(end - 8, high);
    view.setUint32(end - 4, low);
    const length = copy.length;
    copy.update(pad);
    copy.length = length;
    return Array.from(copy.h, (word) => word.toString(16).padStart(8, "0")).join("");
  }

  /** The state as plain JSON-able values (for IndexedDB). */
  save() {
    return {
      h: Array.from(this.h),
      tail: Array.from(this.tail.subarray(0, this.tailLength)),
      length: this.length,
    };
  }

  /** A hash that continues from `save()`'s value. */
  static restore(saved) {
    if (!saved || !Array.isArray(saved.h) || saved.h.length !== 8 || !Array.isArray(saved.tail)) {
      throw new TypeError("Sha256.restore: expected the value of save()");
    }
    if (saved.tail.length >= BLOCK || saved.length < saved.tail.length || !Number.isSafeInteger(saved.length)) {
      throw new TypeError("Sha256.restore: the saved state is inconsistent");
    }
    const hash = new Sha256();
    hash.h.set(saved.h);
    hash.tail.set(saved.tail);
    hash.tailLength = saved.tail.length;
    hash.length = saved.length;
    return hash;
  }

  compress(data, at) {
    const w = this.w;
    for (let i = 0; i < 16; i++) {
      const j = at + i * 4;
      w[i] = (data[j] << 24) | (data[j + 1] << 16) | (data[j + 2] << 8) | data[j + 3];
    }
    for (let i = 16; i < 64; i++) {
      const a = w[i - 15];
      const b = w[i - 2];
      const s0 = ((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3);
      const s1 = ((b >>> 17) | (b << 15)) ^ ((b >>> 19) | (b << 13)) ^ (b >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
    }
    const h = this.h;
    let a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (let i = 0; i < 64; i++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const ch = (e & f) ^ (~e & g);
      const t1 = (k + S1 + ch + K[i] + w[i]) | 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const maj = (a & b) ^ (a & c) ^ (b & c);
      const t2 = (S0 + maj) | 0;
      k = g; g = f; f = e; e = (d + t1) | 0;
      d = c; c = b; b = a; a = (t1 + t2) | 0;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += k;
  }
}

function toBytes(bytes) {
  if (bytes instanceof Uint8Array) return bytes;
  if (bytes instanceof ArrayBuffer) return new Uint8Array(bytes);
  if (ArrayBuffer.isView(bytes)) return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  throw new TypeError("Sha256.update: expected bytes (Uint8Array, ArrayBuffer or a typed array view)");
}
