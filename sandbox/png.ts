/**
 * Small PNG pictures made on the fly, so the sandbox can send "a photo" without shipping binary files or
 * fetching anything: a colour gradient with a simple shape, different for each call.
 */
import { deflateSync } from 'node:zlib';

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(buf: Buffer): number {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}

/** An RGB PNG of `size`×`size`: a gradient from `from` to `to` with a light disc (a "sun") in it. */
export function picture(
  seed: number,
  size = 160,
  from: [number, number, number] = [46, 160, 67],
  to: [number, number, number] = [20, 90, 160],
): Buffer {
  const rows: Buffer[] = [];
  const cx = size * (0.3 + 0.4 * ((seed * 37) % 10) * 0.1);
  const cy = size * 0.35;
  const r = size * 0.16;
  for (let y = 0; y < size; y++) {
    const row = Buffer.alloc(1 + size * 3);
    for (let x = 0; x < size; x++) {
      const t = (x + y) / (2 * size);
      let px = [0, 1, 2].map((i) => Math.round(from[i] + (to[i] - from[i]) * t));
      if ((x - cx) ** 2 + (y - cy) ** 2 < r * r) px = [255, 214, 102];
      if (y > size * 0.72 && Math.sin(x / 9 + seed) * 6 + size * 0.78 < y) px = [34, 110, 50];
      row.set(px, 1 + x * 3);
    }
    rows.push(row);
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(size, 0);
  ihdr.writeUInt32BE(size, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(Buffer.concat(rows))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}
