#!/usr/bin/env node
// Draws the app and tray icons (no image tools needed): a tiny RGBA rasterizer with 4×4
// supersampling and a PNG encoder over node:zlib. Run `node assets/generate-icons.mjs` after
// changing the shapes; the PNGs are committed so builds do not depend on this script.
//
// Motif: three rising bars (a bar chart, "MLX Bar").
//  - icon.png (512), icon@256.png: rounded square, blue gradient, white bars
//  - trayTemplate.png (16) / trayTemplate@2x.png (32): macOS template images, black + alpha only
//  - tray-<state>.png (16) / @2x (32): Linux/Windows, bars in the state colour
//  - renderer/public/favicon.png (64): the app icon for the dashboard tab
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { deflateSync } from 'node:zlib';

const here = path.dirname(fileURLToPath(import.meta.url));

const CRC_TABLE = new Uint32Array(256).map((_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}
export function encodePng(width, height, rgba) {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 6; // RGBA
  const raw = Buffer.alloc((width * 4 + 1) * height);
  for (let y = 0; y < height; y++) {
    raw[y * (width * 4 + 1)] = 0; // filter: none
    rgba.copy(raw, y * (width * 4 + 1) + 1, y * width * 4, (y + 1) * width * 4);
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw, { level: 9 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** Inside test for a rounded rectangle in unit coordinates. */
function inRoundRect(x, y, r) {
  const [x0, y0, x1, y1, rad] = r;
  if (x < x0 || x > x1 || y < y0 || y > y1) return false;
  const cx = Math.min(Math.max(x, x0 + rad), x1 - rad);
  const cy = Math.min(Math.max(y, y0 + rad), y1 - rad);
  return (x - cx) ** 2 + (y - cy) ** 2 <= rad * rad;
}

/** Renders layers [{ shape(x,y)->bool, color(x,y)->[r,g,b,a] }] at size×size with 4×4 supersampling. */
function render(size, layers) {
  const out = Buffer.alloc(size * size * 4);
  const S = 4;
  for (let py = 0; py < size; py++) {
    for (let px = 0; px < size; px++) {
      let r = 0, g = 0, b = 0, a = 0;
      for (let sy = 0; sy < S; sy++) {
        for (let sx = 0; sx < S; sx++) {
          const x = (px + (sx + 0.5) / S) / size;
          const y = (py + (sy + 0.5) / S) / size;
          // composite layers front-to-back-less: simple "over" from bottom to top
          let cr = 0, cg = 0, cb = 0, ca = 0;
          for (const layer of layers) {
            if (!layer.shape(x, y)) continue;
            const [lr, lg, lb, la] = layer.color(x, y);
            const A = la / 255;
            cr = lr * A + cr * (1 - A);
            cg = lg * A + cg * (1 - A);
            cb = lb * A + cb * (1 - A);
            ca = A + ca * (1 - A);
          }
          // accumulate premultiplied
          r += cr; g += cg; b += cb; a += ca;
        }
      }
      const n = S * S;
      const i = (py * size + px) * 4;
      const alpha = a / n;
      out[i + 3] = Math.round(alpha * 255);
      if (alpha > 0) {
        out[i] = Math.round(r / n / alpha);
        out[i + 1] = Math.round(g / n / alpha);
        out[i + 2] = Math.round(b / n / alpha);
      }
    }
  }
  return out;
}

// Three bars of rising height, in unit coordinates, with a given inset box.
function bars(x0, y0, x1, y1) {
  const w = x1 - x0;
  const h = y1 - y0;
  const bw = w * 0.24;
  const gap = (w - 3 * bw) / 2;
  const heights = [0.45, 0.72, 1];
  return heights.map((f, i) => {
    const bx = x0 + i * (bw + gap);
    return [bx, y1 - h * f, bx + bw, y1, bw * 0.32];
  });
}

function barLayers(rects, color) {
  return rects.map((r) => ({ shape: (x, y) => inRoundRect(x, y, r), color: () => color }));
}

const files = [];
function emit(rel, size, layers) {
  const png = encodePng(size, size, render(size, layers));
  const file = path.join(here, rel);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, png);
  files.push(`${rel} ${size}x${size} ${png.length} B`);
}

// App icon: macOS-style rounded square with a vertical gradient.
function appIconLayers() {
  const top = [59, 130, 246];
  const bottom = [79, 70, 229];
  return [
    {
      shape: (x, y) => inRoundRect(x, y, [0.06, 0.06, 0.94, 0.94, 0.2]),
      color: (_x, y) => {
        const t = Math.min(1, Math.max(0, (y - 0.06) / 0.88));
        return [0, 1, 2].map((k) => Math.round(top[k] + (bottom[k] - top[k]) * t)).concat(255);
      },
    },
    ...barLayers(bars(0.26, 0.24, 0.74, 0.76), [255, 255, 255, 255]),
  ];
}
emit('icon.png', 512, appIconLayers());
emit('icon@256.png', 256, appIconLayers());
emit('../renderer/public/favicon.png', 64, appIconLayers());

// macOS template: black + alpha; the system tints it for light/dark menu bars.
const trayBars = bars(0.16, 0.16, 0.84, 0.84);
emit('trayTemplate.png', 16, barLayers(trayBars, [0, 0, 0, 255]));
emit('trayTemplate@2x.png', 32, barLayers(trayBars, [0, 0, 0, 255]));
// A degraded/error template variant: bars plus a small dot in the corner (template images cannot use colour).
const dot = { shape: (x, y) => (x - 0.84) ** 2 + (y - 0.2) ** 2 <= 0.17 ** 2, color: () => [0, 0, 0, 255] };
const barsWithRoom = bars(0.08, 0.2, 0.68, 0.88);
emit('trayAlertTemplate.png', 16, [...barLayers(barsWithRoom, [0, 0, 0, 255]), dot]);
emit('trayAlertTemplate@2x.png', 32, [...barLayers(barsWithRoom, [0, 0, 0, 255]), dot]);

// Linux/Windows: coloured by state (trays there do not tint template images).
const STATE_COLORS = {
  running: [34, 197, 94, 255],
  degraded: [245, 158, 11, 255],
  stopped: [148, 163, 184, 255],
  error: [239, 68, 68, 255],
};
for (const [state, color] of Object.entries(STATE_COLORS)) {
  emit(`tray-${state}.png`, 16, barLayers(trayBars, color));
  emit(`tray-${state}@2x.png`, 32, barLayers(trayBars, color));
}

console.log(files.join('\n'));
