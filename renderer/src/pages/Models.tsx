// Models page: the library (what /v1/models lists), switching the served model, and downloads from
// the Hugging Face hub with live progress (polled about once a second while the page is open).
// Progress uses the native <progress> element: no inline styles, so it works under the strict CSP.
import { useCallback, useEffect, useMemo, useRef, useState } from 'react';
import { Panel } from '../components/Card.tsx';
import { duration, num } from '../format.ts';
import { apiBase, looksLikeRepoId, modelsClient, ModelsApiError, type ModelRow, type PullRow } from '../api/models.ts';

export function bytes(x: number | null | undefined): string {
  if (x == null || !Number.isFinite(x)) return '—';
  if (x >= 1024 ** 3) return `${(x / 1024 ** 3).toFixed(2)} GB`;
  if (x >= 1024 ** 2) return `${(x / 1024 ** 2).toFixed(1)} MB`;
  if (x >= 1024) return `${(x / 1024).toFixed(0)} KB`;
  return `${x} B`;
}

function quant(m: ModelRow): string {
  if (m.quantization) return `${m.quantization.bits}-bit (group ${m.quantization.groupSize})`;
  return m.dtype ?? '—';
}

function message(err: unknown): string {
  return err instanceof ModelsApiError ? err.message : 'Something went wrong';
}

function PullItem(props: { job: PullRow; onCancel: (id: string) => void }) {
  const j = props.job;
  const pct = j.totalBytes > 0 ? Math.min(100, (j.receivedBytes / j.totalBytes) * 100) : 0;
  const tone = j.state === 'done' ? 'ok' : j.state === 'failed' ? 'bad' : j.state === 'cancelled' ? 'idle' : 'warn';
  // queued: waiting for one of the server's download slots (two pulls download at once).
  const label = j.state === 'running' ? 'downloading' : j.state === 'queued' ? 'queued' : j.state;
  const active = j.state === 'running' || j.state === 'queued';
  return (
    <li className="pull" data-testid="pull" data-state={j.state} data-repo={j.repo}>
      <div className="pull-head">
        <code>{j.repo}</code>
        <span className={`badge tone-${tone}`} data-testid="pull-state">{label}</span>
        <span className="spacer" />
        {active ? <button className="btn small" onClick={() => props.onCancel(j.id)}>Cancel</button> : null}
      </div>
      <progress className="pull-bar" max={100} value={j.state === 'done' ? 100 : pct} aria-label={`Download of ${j.repo}`} data-testid="pull-progress" />
      <div className="pull-meta muted num">
        {j.state === 'queued' ? 'waiting for a download slot · ' : ''}
        {bytes(j.receivedBytes)} / {bytes(j.totalBytes)} · {pct.toFixed(0)}%
        {j.state === 'running' ? ` · ${bytes(j.bytesPerSec)}/s · ETA ${j.etaSec == null ? '—' : duration(j.etaSec)}` : ''}
        {` · files ${j.filesDone}/${j.filesTotal}`}
      </div>
      {j.error && j.state === 'failed' ? <div className="field-error" role="alert" data-testid="pull-error">{j.error.message}</div> : null}
    </li>
  );
}

export function Models(props: { apiKey: string | null; endpoint: string | null; onToast: (s: string) => void }) {
  const { onToast } = props;
  const client = useMemo(() => modelsClient(apiBase(props.endpoint), props.apiKey), [props.endpoint, props.apiKey]);
  const [models, setModels] = useState<ModelRow[] | null>(null);
  const [listError, setListError] = useState<string | null>(null);
  const [pulls, setPulls] = useState<PullRow[]>([]);
  const [pullsError, setPullsError] = useState<string | null>(null);
  const [repo, setRepo] = useState('');
  const [formError, setFormError] = useState<string | null>(null);
  const [busy, setBusy] = useState<string | null>(null);
  const finished = useRef(new Set<string>());

  const refresh = useCallback(() => {
    client.list().then((m) => { setModels(m); setListError(null); }, (e) => setListError(message(e)));
  }, [client]);

  useEffect(() => { refresh(); }, [refresh]);

  useEffect(() => {
    let stop = false;
    let timer: ReturnType<typeof setTimeout> | null = null;
    const tick = async () => {
      try {
        const list = await client.pulls();
        if (stop) return;
        setPulls(list);
        setPullsError(null);
        // A download that just finished adds a model: list the library again.
        let changed = false;
        for (const j of list) {
          if (j.state === 'done' && !finished.current.has(j.id)) { finished.current.add(j.id); changed = true; }
        }
        if (changed) refresh();
      } catch (e) {
        if (!stop) setPullsError(message(e));
        // 404: this server has no model management; stop polling.
        if (e instanceof ModelsApiError && e.status === 404) return;
      }
      if (!stop) timer = setTimeout(() => void tick(), 1000);
    };
    void tick();
    return () => { stop = true; if (timer) clearTimeout(timer); };
  }, [client, refresh]);

  const startPull = async () => {
    const r = repo.trim();
    if (!looksLikeRepoId(r)) { setFormError('Enter a Hugging Face repository id like mlx-community/Qwen3-0.6B-4bit (optionally @revision)'); return; }
    setFormError(null);
    try {
      const job = await client.pull(r);
      setPulls((p) => [job, ...p.filter((x) => x.id !== job.id)]);
      setRepo('');
    } catch (e) {
      setFormError(message(e));
    }
  };

  const load = async (id: string) => {
    setBusy(id);
    try {
      await client.load(id);
      onToast(`Loaded ${id}`);
      refresh();
    } catch (e) {
      onToast(message(e));
      setListError(message(e));
    } finally {
      setBusy(null);
    }
  };

  const cancel = (id: string) => void client.cancel(id).then((j) => setPulls((p) => p.map((x) => (x.id === j.id ? j : x))), (e) => onToast(message(e)));

  return (
    <main className="models" data-testid="models-page">
      <Panel title="Library" right={<button className="btn small" onClick={refresh}>Refresh</button>} testId="models-library">
        {listError ? <div className="field-error" role="alert" data-testid="models-error">{listError}</div> : null}
        {models === null ? (
          <p className="muted">Loading…</p>
        ) : models.length === 0 ? (
          <div className="empty"><p>No models downloaded yet.</p><p className="muted">Download one below.</p></div>
        ) : (
          <div className="table-wrap">
            <table className="num">
              <thead>
                <tr><th>Model</th><th className="r">Size</th><th>Architecture</th><th>Quantization</th><th>Memory</th><th className="r">Context</th><th /></tr>
              </thead>
              <tbody>
                {models.map((m) => m.remote ? (
                  // A remote model: served by another machine behind this endpoint; nothing to load or size here.
                  <tr key={`remote:${m.id}`} data-testid="model-row" data-model={m.id} data-remote="true" data-health={m.health ?? 'up'}>
                    <td className="route">
                      {m.id}<span className="tag" data-testid="remote-badge">remote</span>
                      <span className={`tag ${m.health === 'down' ? 'tag-bad' : m.health === 'probing' ? 'tag-warn' : 'tag-ok'}`} data-testid="remote-health"
                        title={m.health === 'down' ? 'The upstream failed repeatedly; requests are refused (or go to its fallback) until a probe succeeds' : m.health === 'probing' ? 'A trial request is checking whether the upstream is back' : 'The upstream answers'}>
                        {m.health === 'down' ? 'down' : m.health === 'probing' ? 'probing' : 'up'}
                      </span>
                    </td>
                    <td className="r">—</td>
                    <td className="muted">served by another machine</td>
                    <td>—</td>
                    <td>—</td>
                    <td className="r">—</td>
                    <td className="r" />
                  </tr>
                ) : (
                  <tr key={m.id} data-testid="model-row" data-model={m.id} data-loaded={m.loaded ? 'true' : 'false'}>
                    <td className="route">{m.id}{m.loaded ? <span className="tag tag-ok" data-testid="loaded-badge">loaded</span> : null}{m.demo ? <span className="tag">demo</span> : null}</td>
                    <td className="r">{bytes(m.sizeBytes)}</td>
                    <td>{m.architecture ?? '—'}{m.family && m.family !== m.architecture ? <span className="muted"> ({m.family})</span> : null}{m.parameters ? <span className="muted"> · {num(m.parameters / 1e6, 1)}M params{m.activeParameters ? `, ${num(m.activeParameters / 1e6, 1)}M active` : ''}</span> : null}</td>
                    <td>{quant(m)}</td>
                    <td title={m.fitsInMemory?.reason ?? ''}>
                      {m.fitsInMemory ? <span className={`tag ${m.fitsInMemory.fits ? 'tag-ok' : 'tag-bad'}`}>{m.fitsInMemory.fits ? 'fits' : 'too large'}</span> : '—'}
                    </td>
                    {/* The context it would serve (contextLength "auto": its own limit capped by what fits in memory). */}
                    <td className="r" data-testid="model-context" title={m.contextLength ? `model limit ${num(m.contextLength, 0)} tokens` : ''}>
                      {m.fitsInMemory?.contextTokens ? num(m.fitsInMemory.contextTokens, 0) : m.contextLength ? num(m.contextLength, 0) : '—'}
                    </td>
                    <td className="r">
                      <button className="btn small" disabled={m.loaded || busy !== null} onClick={() => void load(m.id)} data-testid="load-model">
                        {busy === m.id ? 'Loading…' : m.loaded ? 'Loaded' : 'Load'}
                      </button>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </Panel>

      <Panel title="Download from Hugging Face" testId="models-download">
        <form className="pull-form" onSubmit={(e) => { e.preventDefault(); void startPull(); }}>
          <input type="text" value={repo} onChange={(e) => setRepo(e.target.value)} placeholder="mlx-community/Qwen3-0.6B-4bit" aria-label="Repository id" spellCheck={false} autoComplete="off" data-testid="pull-repo" />
          <button className="btn primary" type="submit" data-testid="pull-start">Download</button>
        </form>
        <p className="field-help">MLX-format repositories (mlx-community). Gated or private repositories need <code>HF_TOKEN</code> set where the server runs; interrupted downloads resume.</p>
        {formError ? <div className="field-error" role="alert" data-testid="pull-form-error">{formError}</div> : null}
        {pullsError ? <div className="field-error" role="alert">{pullsError}</div> : null}
        {pulls.length ? (
          <ul className="pulls" data-testid="pulls">{pulls.map((j) => <PullItem key={j.id} job={j} onCancel={cancel} />)}</ul>
        ) : (
          <p className="muted" data-testid="pulls-empty">No downloads yet.</p>
        )}
      </Panel>
    </main>
  );
}
