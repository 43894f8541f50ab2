// Terminal rendering of a pull: one self-updating line on a TTY; plain, log-friendly lines when
// output is a file or a pipe (no carriage returns or escape codes in CI logs).
import type { PullJob, PullProgress, PullRetry, PullStart, PullResult } from './downloader.ts';
import { formatBytes, formatDuration } from './format.ts';

export function renderProgressLine(p: PullProgress, width = 80): string {
  const pct = p.totalBytes > 0 ? Math.min(100, (p.receivedBytes / p.totalBytes) * 100) : 0;
  const speed = p.bytesPerSec > 0 ? `${formatBytes(p.bytesPerSec)}/s` : '-- B/s';
  const tail = ` ${String(Math.floor(pct)).padStart(3)}% ${formatBytes(p.receivedBytes)} / ${formatBytes(p.totalBytes)}  ${speed}  ETA ${formatDuration(p.etaSec)}`;
  const label = `[${Math.min(p.filesDone + 1, p.filesTotal)}/${p.filesTotal}] ${p.file ?? ''}`;
  const barWidth = Math.max(10, Math.min(30, width - tail.length - Math.min(label.length, 28) - 4));
  const filled = Math.round((pct / 100) * barWidth);
  const bar = `[${'#'.repeat(filled)}${'-'.repeat(barWidth - filled)}]`;
  const room = Math.max(0, width - tail.length - bar.length - 2);
  const shortLabel = label.length > room ? label.slice(0, Math.max(0, room - 1)) + '…' : label.padEnd(room);
  return `${shortLabel} ${bar}${tail}`.slice(0, width);
}

/** Shows a pull's progress on `out` (default stderr). Returns a function that detaches it. */
export function attachTerminalProgress(job: PullJob, out: NodeJS.WriteStream = process.stderr): () => void {
  const tty = !!out.isTTY;
  let lastDraw = 0;
  let drawn = false;
  const clear = () => {
    if (tty && drawn) out.write('\r\x1b[2K');
    drawn = false;
  };
  const onStart = (s: PullStart) => {
    const resumed = s.resumedBytes > 0 ? `, resuming ${formatBytes(s.resumedBytes)} already downloaded` : '';
    out.write(`Downloading ${s.id} @ ${s.commit.slice(0, 12)}: ${s.files.length} files, ${formatBytes(s.totalBytes)}${resumed}\n`);
  };
  const onProgress = (p: PullProgress) => {
    if (!tty) return;
    const now = Date.now();
    if (now - lastDraw < 100 && p.receivedBytes < p.totalBytes) return;
    lastDraw = now;
    out.write(`\r\x1b[2K${renderProgressLine(p, Math.max(60, (out.columns || 80) - 1))}`);
    drawn = true;
  };
  let filesDone = 0;
  const onFile = (f: { file: string; size: number }) => {
    filesDone++;
    if (tty) return;
    out.write(`  [${filesDone}] ${f.file} ${formatBytes(f.size)} ok\n`);
  };
  const onRetry = (r: PullRetry) => {
    clear();
    const wait = r.delayMs ? ` (waiting ${Math.round(r.delayMs / 1000)} s as asked)` : '';
    out.write(`  retrying${r.file ? ` ${r.file}` : ''} after: ${r.message}${wait}; ${r.retriesLeft} retries left\n`);
  };
  const onDone = (r: PullResult) => {
    clear();
    out.write(r.alreadyPresent ? `${r.id} is already up to date.\n` : `Downloaded ${r.id}: ${r.files} files, ${formatBytes(r.bytes)}, verified.\n`);
  };
  const onFailed = () => clear();
  const listeners = Object.entries({ start: onStart, progress: onProgress, file: onFile, retry: onRetry, done: onDone, failed: onFailed });
  for (const [event, fn] of listeners) job.on(event, fn);
  return () => {
    for (const [event, fn] of listeners) job.off(event, fn);
  };
}
