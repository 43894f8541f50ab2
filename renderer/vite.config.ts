// Builds the dashboard to dist/renderer with relative asset URLs (base './'), so the same files work
// when the local server serves them at /dashboard/ and when the Electron window loads them from the
// app:// protocol. No inline scripts or styles are emitted (the page's CSP allows only 'self').
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';
import { settingsSchemaPlugin } from './settings-plugin.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');

export default defineConfig({
  root: here,
  base: './',
  plugins: [react(), settingsSchemaPlugin(root)],
  publicDir: path.join(here, 'public'),
  build: {
    outDir: path.join(root, 'dist/renderer'),
    emptyOutDir: true,
    // The polyfill would be an inline script; every browser/Electron we target supports modulepreload.
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    target: 'es2022',
    chunkSizeWarningLimit: 1024,
    reportCompressedSize: false,
  },
  server: { fs: { allow: [root] } },
  logLevel: 'warn',
});
