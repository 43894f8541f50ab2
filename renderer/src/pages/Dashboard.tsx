import type { MetricsSnapshot } from '../../../main/common/metrics-types.ts';
import type { AppState } from '../../../preload/api.ts';
import type { Sample } from '../api/history.ts';
import { Panel, Stat } from '../components/Card.tsx';
import { SeriesChart, type SeriesDef } from '../components/SeriesChart.tsx';
import { duration, mb, ms, num, pct, secs, since, STATE_LABELS, stateTone } from '../format.ts';
import type { Palette } from '../theme.ts';

/** MLX's own memory pool (Metal builds report it; the CPU build has no counters — say so, not 0). */
function mlxPool(m: MetricsSnapshot['memory']): string {
  if (m.mlx_active_mb == null) return m.kv_pool_mb != null ? `KV pool ${mb(m.kv_pool_mb)}` : 'MLX pool: not available on this build';
  return `MLX active ${mb(m.mlx_active_mb)} · peak ${mb(m.mlx_peak_mb ?? 0)}${m.mlx_cache_mb != null ? ` · cache ${mb(m.mlx_cache_mb)}` : ''}`;
}

export function DegradationBadge({ snap, idleLabel = 'Waiting for server' }: { snap: MetricsSnapshot | null; idleLabel?: string }) {
  if (!snap) return <span className="badge tone-idle" data-testid="degradation-badge" data-state="unknown">{idleLabel}</span>;
  const d = snap.degradation;
  return (
    <span className={`badge tone-${stateTone(d.state)}`} data-testid="degradation-badge" data-state={d.state}>
      <span className="dot" aria-hidden="true" />
      {STATE_LABELS[d.state] ?? d.state}
    </span>
  );
}

type Upstream = NonNullable<MetricsSnapshot['upstreams']>[number];

const BREAKER: Record<Upstream['state'], { label: string; tone: 'ok' | 'warn' | 'bad'; title: string }> = {
  closed: { label: 'up', tone: 'ok', title: 'Circuit closed: requests are forwarded' },
  half_open: { label: 'probing', tone: 'warn', title: 'Circuit half-open: one trial request checks whether the upstream is back' },
  open: { label: 'down', tone: 'bad', title: 'Circuit open after repeated failures: requests are refused at once (or answered by the fallback model)' },
};

/** "p50 · p95 · p99" of an upstream summary; "—" before the first finished request. */
function triple(p: { p50: number; p95: number; p99: number }, fmt: (v: number) => string): string {
  if (!(p.p50 > 0 || p.p95 > 0 || p.p99 > 0)) return '—';
  return `${fmt(p.p50)} · ${fmt(p.p95)} · ${fmt(p.p99)}`;
}

/** Remote models (settings `remotes`): one row per upstream, from /v1/metrics `upstreams`. */
export function UpstreamsPanel({ upstreams }: { upstreams: Upstream[] }) {
  return (
    <Panel title="Remote models (per upstream)" testId="upstreams">
      <div className="table-wrap">
        <table className="num">
          <thead>
            <tr>
              <th>Remote model</th>
              <th>Circuit</th>
              <th className="r">Requests</th>
              <th className="r">Active · queued</th>
              <th className="r">Latency P50 · P95 · P99</th>
              <th className="r">TTFT P50 · P95 · P99</th>
              <th className="r">Tokens/s P50</th>
              <th className="r">Errors</th>
              <th className="r">Fallbacks</th>
            </tr>
          </thead>
          <tbody>
            {upstreams.map((u) => {
              const b = BREAKER[u.state] ?? BREAKER.open;
              const errors = sumValues(u.errors);
              const byCode = Object.entries(u.errors).map(([k, v]) => `${k}×${v}`).join(' · ');
              return (
                <tr key={u.upstream} data-testid="upstream-row" data-upstream={u.upstream} data-state={u.state}>
                  <td className="route">{u.upstream}</td>
                  <td><span className={`tag tag-${b.tone}`} title={b.title} data-testid="upstream-state">{b.label}</span></td>
                  <td className="r" data-testid="upstream-requests">{num(u.requests)}</td>
                  <td className="r">{`${num(u.active)} · ${num(u.queued)}`}</td>
                  <td className="r" data-testid="upstream-latency">{triple(u.latency_ms, ms)}</td>
                  <td className="r" data-testid="upstream-ttft">{triple(u.ttft_ms, ms)}</td>
                  <td className="r" data-testid="upstream-tps">{u.tokens_per_second.p50 > 0 ? num(u.tokens_per_second.p50, 1) : '—'}</td>
                  <td className={`r${errors > 0 ? ' status-5xx' : ''}`} data-testid="upstream-errors" title={byCode}>{errors > 0 ? `${num(errors)} (${byCode})` : '0'}</td>
                  <td className="r">{num(u.fallbacks)}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
    </Panel>
  );
}

function plural(n: number, word: string): string {
  return `${num(n)} ${word}${n === 1 ? '' : 's'}`;
}

function sumValues(r: Record<string, number> | undefined): number {
  return r ? Object.values(r).reduce((a, b) => a + (Number.isFinite(b) ? b : 0), 0) : 0;
}

export function Dashboard(props: { snap: MetricsSnapshot | null; history: Sample[]; palette: Palette; app: AppState | null }) {
  const { snap, history, palette } = props;
  const count = snap?.latency.count ?? 0;
  const noRequests = count === 0;
  const corruptions = sumValues(snap?.cache_corruptions);
  const d = snap?.degradation;
  const cacheOff = snap?.cache.enabled === false;
  // Percentiles are over the generation routes, the last window_seconds (default a minute).
  const windowLabel = `last ${snap?.latency.window_seconds === 60 || !snap?.latency.window_seconds ? 'minute' : `${snap.latency.window_seconds} s`}`;
  // Latency and TTFT are only meaningful once requests exist; earlier samples are placeholders (0).
  const latencyHistory = history.filter((h) => h.n > 0);
  const charts: { title: string; testId: string; data: Sample[]; unit: (v: number) => string; empty: string; series: SeriesDef[] }[] = [
    {
      title: `Latency (end to end, generations, ${windowLabel})`,
      testId: 'chart-latency',
      data: latencyHistory,
      unit: ms,
      empty: noRequests ? 'No requests yet: send one to the endpoint to see latency here.' : 'Collecting samples…',
      series: [{ key: 'p50', name: 'P50' }, { key: 'p95', name: 'P95' }, { key: 'p99', name: 'P99' }],
    },
    {
      title: `Time to first token (${windowLabel})`,
      testId: 'chart-ttft',
      data: latencyHistory,
      unit: ms,
      empty: noRequests ? 'No requests yet.' : 'Collecting samples…',
      series: [{ key: 'ttft50', name: 'P50' }, { key: 'ttft95', name: 'P95' }, { key: 'ttft99', name: 'P99' }],
    },
    { title: 'Generation speed (tokens/s)', testId: 'chart-throughput', data: history, unit: (v) => num(v, 1), empty: 'Waiting for samples…', series: [{ key: 'tps', name: 'tokens/s' }] },
    { title: 'Memory', testId: 'chart-memory', data: history, unit: mb, empty: 'Waiting for samples…', series: [{ key: 'engineMb', name: 'engine RSS' }, { key: 'serverMb', name: 'server RSS' }] },
  ];
  const promptTotal = (snap?.prompt_cache.reused_tokens ?? 0) + (snap?.prompt_cache.computed_tokens ?? 0);

  return (
    <main className="dashboard" data-testid="dashboard">
      {d && d.state !== 'normal' ? (
        <div className={`banner tone-${stateTone(d.state)}`} role="status" data-testid="degradation-banner">
          <strong>{STATE_LABELS[d.state] ?? d.state}.</strong> {d.reason ?? ''}{' '}
          <span className="muted">Since {since(d.since)}.</span>
        </div>
      ) : null}

      <div className="stats">
        <Stat
          testId="stat-cache-hit"
          label="Response cache hit rate"
          value={cacheOff ? 'Off' : pct(snap?.cache.hit_rate)}
          sub={
            !snap
              ? undefined
              : cacheOff
                ? 'off (the default); turn it on with the responseCache.enabled setting'
                : snap.cache.hit_rate === null
                  ? 'on · no lookups yet'
                  : `${num(snap.cache.cache_hits)} hits · ${num(snap.cache.cache_misses)} misses`
          }
        />
        <Stat
          testId="stat-prompt-reuse"
          label="Prompt-cache token reuse"
          value={promptTotal > 0 ? pct(snap?.prompt_cache.hit_rate) : '—'}
          sub={snap ? `${num(snap.prompt_cache.reused_tokens)} of ${num(promptTotal)} tokens reused` : undefined}
        />
        <Stat
          testId="stat-tps"
          label="Tokens / s"
          value={snap ? num(snap.tokens_per_second, 1) : '—'}
          sub={snap ? `${num(snap.tokens.completion_total)} generated · ${num(snap.tokens.prompt_total)} prompt` : undefined}
        />
        <Stat
          testId="stat-lookup"
          label="Lookup decoding: drafts accepted"
          value={snap?.lookup && snap.lookup.draft_tokens > 0 ? pct(snap.lookup.acceptance_rate) : '—'}
          sub={
            !snap?.lookup
              ? undefined
              : snap.lookup.draft_tokens === 0
                ? 'no drafts yet'
                : `${num(snap.lookup.accepted_tokens)} of ${num(snap.lookup.draft_tokens)} drafted tokens · ${pct(
                    snap.tokens.completion_total > 0 ? snap.lookup.accepted_tokens / snap.tokens.completion_total : null,
                  )} of output`
          }
        />
        <Stat
          testId="stat-rps"
          label="Requests / s"
          value={snap ? num(snap.throughput.requests_per_second, 2) : '—'}
          sub={snap ? `${num(snap.throughput.total_requests)} total · ${num(snap.requests.active)} active · ${num(snap.requests.queued)} queued` : undefined}
        />
        <Stat
          testId="stat-latency"
          label="Generation latency P50 / P95 / P99"
          value={noRequests ? '—' : `${secs(snap?.latency.p50)}`}
          sub={
            noRequests ? (
              (snap?.throughput.total_requests ?? 0) === 0 ? 'no requests yet' : `no generations in the ${windowLabel}`
            ) : (
              <span className="num" title={`chat, completions, responses, messages and Ollama generate routes; ${windowLabel}`}>
                {`${secs(snap?.latency.p95)} · ${secs(snap?.latency.p99)} · n=${num(count)} · ${windowLabel}`}
              </span>
            )
          }
        />
        <Stat
          testId="stat-engine-mem"
          label="Engine memory"
          value={snap ? mb(snap.memory.engine_rss_mb) : '—'}
          sub={snap ? `peak ${mb(snap.memory.engine_peak_mb)} · separate process · ${mlxPool(snap.memory)}` : undefined}
        />
        <Stat
          testId="stat-server-mem"
          label="Server memory"
          value={snap ? mb(snap.memory.server_rss_mb) : '—'}
          sub={snap ? <span title={`growth since start ${num(snap.memory.growth_percent, 1)}%`}>{`app ${mb(snap.memory.current_mb)} · peak ${mb(snap.memory.peak_mb)}`}</span> : undefined}
        />
        <Stat
          testId="stat-health"
          label="Restarts · corruptions"
          value={snap ? `${num(snap.engine_restarts)} · ${num(corruptions)}` : '—'}
          tone={snap && (snap.engine_restarts > 0 || corruptions > 0) ? 'warn' : undefined}
          sub={snap ? `${plural(snap.requests.errors, 'error')} · ${num(snap.requests.cancelled)} cancelled` : undefined}
        />
      </div>

      <div className="charts">
        {charts.map((c) => (
          <Panel key={c.testId} title={c.title} testId={c.testId}>
            <SeriesChart data={c.data} palette={palette} unit={c.unit} empty={c.empty} series={c.series} />
          </Panel>
        ))}
      </div>

      {snap?.upstreams?.length ? <UpstreamsPanel upstreams={snap.upstreams} /> : null}

      <Panel
        title="Recent requests (newest first)"
        testId="recent-requests"
        right={snap ? <span className="muted num">by status: {Object.entries(snap.requests.by_status).map(([k, v]) => `${k}×${v}`).join(' · ') || '—'}</span> : null}
      >
        {snap && snap.recent_requests.length > 0 ? (
          <div className="table-wrap">
            <table className="num">
              <thead>
                <tr>
                  <th>Time</th>
                  <th>API</th>
                  <th>Route</th>
                  <th className="r">Status</th>
                  <th className="r">Prompt</th>
                  <th className="r">Completion</th>
                  <th className="r">Cached</th>
                  <th className="r">TTFT</th>
                  <th className="r">Latency</th>
                  <th>Finish</th>
                </tr>
              </thead>
              <tbody>
                {snap.recent_requests.slice(0, 15).map((r) => (
                  <tr key={r.id} data-testid="recent-row">
                    <td>{new Date(r.at).toLocaleTimeString('en-GB', { hour12: false })}</td>
                    <td data-testid="recent-api">{r.api ?? '—'}</td>
                    <td className="route">{r.route}{r.stream ? <span className="tag">stream</span> : null}{r.response_cache_hit ? <span className="tag tag-ok">cache</span> : null}</td>
                    <td className={`r status-${Math.floor(r.status / 100)}xx`}>{r.status}</td>
                    <td className="r">{num(r.prompt_tokens)}</td>
                    <td className="r">{num(r.completion_tokens)}</td>
                    <td className="r">{num(r.cached_tokens)}</td>
                    <td className="r">{secs(r.ttft_s)}</td>
                    <td className="r">{secs(r.latency_s)}</td>
                    <td>{r.finish_reason ?? '—'}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        ) : (
          <div className="empty" data-testid="recent-empty">
            <p><strong>No requests yet.</strong></p>
            <p className="muted">
              {props.app && !props.app.endpoint
                ? 'The server is not running: start it with the Start button above or from the tray menu.'
                : `Point your editor at ${props.app?.endpoint ?? (typeof location !== 'undefined' && location.protocol.startsWith('http') ? `${location.origin}/v1` : 'the endpoint')} — the Settings tab has ready-made snippets. Requests appear here as they finish.`}
            </p>
          </div>
        )}
      </Panel>

      <footer className="foot muted num" data-testid="footer">
        {snap ? `Updated ${new Date(snap.timestamp).toLocaleTimeString('en-GB', { hour12: false })} · uptime ${duration(snap.uptime_seconds)} · degradation since ${since(snap.degradation.since)}` : 'Waiting for the first snapshot…'}
      </footer>
    </main>
  );
}
