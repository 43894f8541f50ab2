import { useCallback, useEffect, useState } from 'react';
import type { MetricsSnapshot } from '../../main/common/metrics-types.ts';
import type { AppState } from '../../preload/api.ts';
import { bridge, startFeed, type FeedStatus } from './api/feed.ts';
import { appendSample, type Sample } from './api/history.ts';
import { copyText } from './clipboard.ts';
import { duration } from './format.ts';
import { Dashboard, DegradationBadge } from './pages/Dashboard.tsx';
import { Models } from './pages/Models.tsx';
import { Settings } from './pages/Settings.tsx';
import { usePalette, type ThemeSetting } from './theme.ts';

type Tab = 'dashboard' | 'models' | 'settings';
const KEY_STORAGE = 'mlxbar.apiKey';

function tabFromHash(): Tab {
  return location.hash === '#/settings' ? 'settings' : location.hash === '#/models' ? 'models' : 'dashboard';
}

function browserEndpoint(): string {
  return location.protocol.startsWith('http') ? `${location.origin}/v1` : 'http://127.0.0.1:8080/v1';
}

function KeyPrompt(props: { onKey: (k: string) => void }) {
  const [v, setV] = useState('');
  return (
    <form className="card keyprompt" data-testid="key-prompt" onSubmit={(e) => { e.preventDefault(); if (v.trim()) props.onKey(v.trim()); }}>
      <h2>This server needs its API key</h2>
      <p className="muted">The key stays in this browser tab only (session storage).</p>
      <div className="row">
        <input type="password" autoComplete="off" value={v} onChange={(e) => setV(e.target.value)} placeholder="API key" aria-label="API key" />
        <button className="btn primary" type="submit">Connect</button>
      </div>
    </form>
  );
}

export function App() {
  // The theme setting is known in the app (bridge); a browser page follows the system.
  const [theme, setTheme] = useState<ThemeSetting>('system');
  const palette = usePalette(theme);
  const [tab, setTab] = useState<Tab>(tabFromHash);
  const [snap, setSnap] = useState<MetricsSnapshot | null>(null);
  const [history, setHistory] = useState<Sample[]>([]);
  const [feed, setFeed] = useState<FeedStatus | null>(null);
  const [app, setApp] = useState<AppState | null>(null);
  const [apiKey, setApiKey] = useState<string | null>(() => (bridge() ? null : sessionStorage.getItem(KEY_STORAGE)));
  const [toast, setToast] = useState<string | null>(null);

  useEffect(() => {
    const on = () => setTab(tabFromHash());
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);

  useEffect(() => {
    const b = bridge();
    if (!b) return;
    void b.getAppState().then(setApp).catch(() => {});
    const readTheme = () =>
      void b.getSettings().then((r) => {
        const t = r.values.theme;
        setTheme(t === 'light' || t === 'dark' ? t : 'system');
      }).catch(() => {});
    readTheme();
    // Settings are saved through the bridge; the app state is pushed after every save.
    return b.onAppState((st) => {
      setApp(st);
      readTheme();
    });
  }, []);

  useEffect(() => {
    return startFeed({
      apiKey,
      onSnapshot: (s) => {
        setSnap(s);
        setHistory((h) => appendSample(h, s));
      },
      onStatus: setFeed,
    });
  }, [apiKey]);

  useEffect(() => {
    if (!toast) return;
    const t = setTimeout(() => setToast(null), 2500);
    return () => clearTimeout(t);
  }, [toast]);

  // In the app the endpoint exists only while the server runs; in a browser it is this page's server.
  const endpoint: string | null = app ? app.endpoint : browserEndpoint();
  const model = snap?.model.id ?? app?.model ?? 'no model loaded';
  const key = app ? app.apiKey : apiKey;

  const copyEndpoint = useCallback(() => {
    if (endpoint) void copyText(endpoint).then((ok) => setToast(ok ? 'Endpoint copied' : 'Copy failed'));
  }, [endpoint]);

  const onKey = (k: string) => {
    sessionStorage.setItem(KEY_STORAGE, k);
    setApiKey(k);
  };

  const b = bridge();
  const feedLabel = !feed ? 'connecting…' : feed.connected ? (feed.mode === 'bridge' ? 'live (app)' : feed.mode === 'sse' ? 'live' : 'polling') : feed.error ?? 'offline';

  return (
    <div className="app">
      <header className="topbar">
        <div className="brand">
          <img src="./favicon.png" alt="" width={22} height={22} />
          <span>MLX Bar</span>
        </div>
        <nav className="tabs top" aria-label="Pages">
          <a href="#/" className={tab === 'dashboard' ? 'tab active' : 'tab'} data-testid="nav-dashboard">Dashboard</a>
          <a href="#/models" className={tab === 'models' ? 'tab active' : 'tab'} data-testid="nav-models">Models</a>
          <a href="#/settings" className={tab === 'settings' ? 'tab active' : 'tab'} data-testid="nav-settings">Settings</a>
        </nav>
        <div className="spacer" />
        <DegradationBadge snap={snap} idleLabel={app && app.server !== 'running' ? `Server ${app.server}` : 'Waiting for server'} />
      </header>

      <section className="infobar num" data-testid="infobar">
        <div>
          <span className="k">Model</span>
          <span className="v" data-testid="model">{model}</span>
          {snap?.model.demo ? (
            <span className="tag tag-warn" data-testid="model-demo" title="The built-in random-weight DEMO model: its output is gibberish by design">
              DEMO · random weights
            </span>
          ) : null}
        </div>
        <div>
          <span className="k">Endpoint</span>
          <code className="v" data-testid="endpoint">{endpoint ?? 'not running'}</code>
          <button className="btn small" onClick={copyEndpoint} disabled={!endpoint} data-testid="copy-endpoint">Copy</button>
        </div>
        <div><span className="k">Uptime</span><span className="v" data-testid="uptime">{snap ? duration(snap.uptime_seconds) : '—'}</span></div>
        {app ? (
          <div>
            <span className="k">Server</span>
            <span className={`v server-${app.server}`} data-testid="server-status">{app.server}</span>
            {app.server === 'running' ? <button className="btn small" onClick={() => void b?.stopServer().then(setApp)}>Stop</button> : null}
            {app.server === 'stopped' || app.server === 'error' ? <button className="btn small" disabled={app.settingsIssues.length > 0} onClick={() => void b?.startServer().then(setApp)}>Start</button> : null}
          </div>
        ) : null}
        <div className="feed"><span className={`live-dot ${feed?.connected ? 'on' : 'off'}`} aria-hidden="true" /><span data-testid="feed-status">{feedLabel}</span></div>
      </section>

      {app?.error ? <div className="banner tone-bad" role="alert">{app.error}</div> : null}
      {feed?.needsKey ? <KeyPrompt onKey={onKey} /> : null}

      {tab === 'dashboard' ? (
        <Dashboard snap={snap} history={history} palette={palette} app={app} />
      ) : tab === 'models' ? (
        <Models apiKey={key} endpoint={app ? app.endpoint : null} onToast={setToast} />
      ) : (
        <Settings app={app} endpoint={endpoint} model={snap?.model.id ?? app?.model ?? 'default'} apiKey={key} onToast={setToast} />
      )}

      <div className={`toast${toast ? ' show' : ''}`} role="status" aria-live="polite">{toast ?? ''}</div>
    </div>
  );
}
