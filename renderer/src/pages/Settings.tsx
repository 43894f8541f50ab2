import { useEffect, useMemo, useState } from 'react';
import { defaults, schema, validate } from 'virtual:mlxbar-settings';
import type { AppState, SettingsIssue } from '../../../preload/api.ts';
import { settingsBackend, type SettingsBackend, type SettingsLoad } from '../api/settings.ts';
import { Panel } from '../components/Card.tsx';
import { fieldsOf, fromInput, getAt, issuesFromAjv, setAt, settingLabels, settingPathOf, toInput, type Field } from '../settings-form.ts';
import { buildSnippets } from '../snippets.ts';
import { copyText } from '../clipboard.ts';

function FieldInput(props: { field: Field; value: unknown; onChange: (v: unknown) => void; invalid: boolean; placeholder?: string }) {
  const { field, value, onChange } = props;
  const id = `setting-${field.path.join('-')}`;
  const common = { id, name: field.pointer, 'aria-invalid': props.invalid || undefined, 'data-testid': id };
  const [text, setText] = useState(() => toInput(field, value));
  // Keep the raw text while typing (so "12a" stays visible with its error), resync on outside changes.
  useEffect(() => { if (fromInput(field, text) !== value && JSON.stringify(fromInput(field, text)) !== JSON.stringify(value)) setText(toInput(field, value)); }, [value]); // eslint-disable-line react-hooks/exhaustive-deps
  switch (field.kind) {
    case 'boolean':
      return (
        <label className="switch">
          <input {...common} type="checkbox" checked={value === true} onChange={(e) => onChange(e.target.checked)} />
          <span>{value === true ? 'On' : 'Off'}</span>
        </label>
      );
    case 'enum':
      return (
        <select {...common} value={toInput(field, value)} onChange={(e) => onChange(fromInput(field, e.target.value))}>
          {value === undefined ? <option value="">—</option> : null}
          {value !== undefined && !field.options.some((o) => JSON.stringify(o) === JSON.stringify(value)) ? (
            <option value={toInput(field, value)}>{`${String(value)} (not allowed)`}</option>
          ) : null}
          {field.options.map((o) => (
            <option key={JSON.stringify(o)} value={JSON.stringify(o)}>{o === null ? '(none)' : String(o)}</option>
          ))}
        </select>
      );
    case 'string-list':
      return <textarea {...common} rows={3} value={text} placeholder="one per line" onChange={(e) => { setText(e.target.value); onChange(fromInput(field, e.target.value)); }} />;
    default:
      return (
        <input
          {...common}
          type={field.kind === 'secret' ? 'password' : 'text'}
          inputMode={field.kind === 'integer' ? 'numeric' : field.kind === 'number' ? 'decimal' : undefined}
          autoComplete="off"
          spellCheck={false}
          value={text}
          placeholder={props.placeholder ?? (field.schema.default !== undefined && field.schema.default !== null ? String(field.schema.default) : field.nullable ? '(not set)' : '')}
          onChange={(e) => { setText(e.target.value); onChange(fromInput(field, e.target.value)); }}
        />
      );
  }
}

/** Where the server will listen with these settings (for snippets while it is not running). */
function endpointFromValues(values: Record<string, unknown>): string {
  const host = typeof values.host === 'string' && values.host ? values.host : '127.0.0.1';
  const port = typeof values.port === 'number' && values.port > 0 ? values.port : 8080;
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}/v1`;
}

/** "268435456" → "256 MB" for byte-sized settings. */
function bytesHint(field: Field, value: unknown): string | null {
  if (!/bytes/i.test(field.path[field.path.length - 1]) || typeof value !== 'number' || !Number.isFinite(value)) return null;
  const units = ['bytes', 'KB', 'MB', 'GB', 'TB'];
  let v = value;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `= ${Number.isInteger(v) ? v : v.toFixed(1)} ${units[i]}`;
}

function Snippets(props: { endpoint: string; model: string; apiKey: string | null; onCopied: (what: string) => void }) {
  const snippets = useMemo(() => buildSnippets({ endpoint: props.endpoint, model: props.model, apiKey: props.apiKey }), [props.endpoint, props.model, props.apiKey]);
  const [active, setActive] = useState(snippets[0].id);
  const s = snippets.find((x) => x.id === active) ?? snippets[0];
  return (
    <Panel title="Connect an editor" testId="snippets" right={<span className="muted">{props.endpoint}</span>}>
      <div className="tabs" role="tablist">
        {snippets.map((x) => (
          <button key={x.id} role="tab" aria-selected={x.id === active} className={x.id === active ? 'tab active' : 'tab'} onClick={() => setActive(x.id)} data-testid={`snippet-tab-${x.id}`}>
            {x.title}
          </button>
        ))}
      </div>
      <div className="snippet">
        <div className="snippet-head">
          <span className="muted">{s.where}</span>
          <button className="btn" onClick={() => void copyText(s.text).then((ok) => props.onCopied(ok ? `${s.title} snippet copied` : 'Copy failed'))} data-testid="snippet-copy">Copy</button>
        </div>
        <pre data-testid={`snippet-${s.id}`}><code>{s.text}</code></pre>
      </div>
    </Panel>
  );
}

export function Settings(props: { app: AppState | null; endpoint: string | null; model: string; apiKey: string | null; onToast: (msg: string) => void }) {
  const backend: SettingsBackend = useMemo(() => settingsBackend(props.apiKey), [props.apiKey]);
  // Top-level settings first, then each group (e.g. "Response cache") under its own heading.
  const fields = useMemo(() => {
    const all = schema ? fieldsOf(schema) : [];
    return [...all.filter((f) => !f.group), ...all.filter((f) => f.group)];
  }, []);
  const [values, setValues] = useState<Record<string, unknown>>(defaults);
  // Issues the backend reported (the stored file, or the last refused save); a field's own are
  // dropped as soon as that field is edited (whole-document ones on any edit).
  const [serverIssues, setServerIssues] = useState<SettingsIssue[]>([]);
  const [loaded, setLoaded] = useState<'loading' | 'loaded' | 'readonly'>('loading');
  const [dirty, setDirty] = useState(false);
  const [saving, setSaving] = useState(false);
  // HTTP backend extras: flag/env overrides, whether a key is stored, what waits for a restart.
  const [meta, setMeta] = useState<Omit<SettingsLoad, 'values' | 'issues'>>({});
  const [clearKey, setClearKey] = useState(false);
  /** After a save over HTTP: the settings that need a restart (null = no save in this visit). */
  const [savedRestart, setSavedRestart] = useState<string[] | null>(null);
  /** After a save over HTTP: the settings the server applied at once. */
  const [savedApplied, setSavedApplied] = useState<string[]>([]);

  const apply = (r: SettingsLoad) => {
    setValues(r.values);
    setServerIssues(r.issues);
    const { values: _v, issues: _i, ...rest } = r;
    setMeta(rest);
    setClearKey(false);
  };

  useEffect(() => {
    let live = true;
    void backend.load().then((r) => {
      if (!live) return;
      if (r) { apply(r); setLoaded('loaded'); }
      else setLoaded('readonly');
    });
    return () => { live = false; };
  }, [backend]);

  const issues = useMemo(() => {
    const r = validate(values);
    return r.ok ? [] : issuesFromAjv(r.errors);
  }, [values]);
  const shown = [...serverIssues, ...issues.filter((i) => !serverIssues.some((s) => s.path === i.path && s.message === i.message))];
  const byPath = new Map<string, string[]>();
  for (const i of shown) byPath.set(i.path, [...(byPath.get(i.path) ?? []), i.message]);
  const fieldPointers = new Set(fields.map((f) => f.pointer));
  const general = shown.filter((i) => !fieldPointers.has(i.path));

  const save = async () => {
    setSaving(true);
    try {
      const r = await backend.save(values, { clearApiKey: clearKey });
      setServerIssues(r.issues);
      setDirty(!r.ok);
      props.onToast(r.ok ? 'Settings saved' : 'Settings not saved: fix the highlighted fields');
      if (r.ok && backend.kind === 'http') {
        setSavedRestart(r.restartRequired ?? []);
        setSavedApplied(r.applied ?? []);
        // Re-read: the key field goes back to "stored, leave empty to keep", pending restarts update.
        const again = await backend.load();
        if (again) apply(again);
      }
    } catch {
      props.onToast('Settings could not be saved');
    } finally {
      setSaving(false);
    }
  };

  const readOnly = loaded !== 'loaded';
  const overrides = meta.overrides ?? {};
  const pending = savedRestart ?? meta.restartRequired ?? [];
  const edit = (f: Field, v: unknown) => {
    setValues((cur) => setAt(cur, f.path, v));
    setServerIssues((cur) => cur.filter((i) => i.path !== f.pointer && i.path !== ''));
    setDirty(true);
  };

  return (
    <main className="settings" data-testid="settings">
      <Snippets endpoint={props.endpoint ?? endpointFromValues(values)} model={props.model} apiKey={props.apiKey} onCopied={props.onToast} />
      <Panel
        title="Settings"
        testId="settings-form"
        right={shown.length > 0 ? <span className="badge tone-bad" data-testid="settings-issue-count">{shown.length} {shown.length === 1 ? 'problem' : 'problems'}</span> : <span className="badge tone-ok">valid</span>}
      >
        {props.app && props.app.settingsIssues.length > 0 ? (
          <div className="banner tone-bad" role="alert" data-testid="settings-invalid-banner">
            The saved settings are invalid, so the server is not running. Fix the fields marked below and save.
          </div>
        ) : null}
        {savedRestart !== null || pending.length > 0 ? (
          <div className={`banner ${pending.length ? 'tone-warn' : 'tone-ok'}`} role="status" data-testid="settings-restart-note">
            {savedRestart !== null ? 'Saved. ' : 'Saved settings are not in effect yet. '}
            {savedRestart !== null && savedApplied.length ? <>Applied now: {settingLabels(fields, savedApplied).join(', ')}. </> : null}
            {pending.length ? (
              <>Restart <code>mlx-bar serve</code> to apply: {settingLabels(fields, pending).join(', ')}.</>
            ) : (
              'Nothing to restart: the server already runs with these values.'
            )}
          </div>
        ) : null}
        {loaded === 'readonly' ? (
          <p className="muted" data-testid="settings-readonly">
            Read-only in the browser: edits are checked here, but the headless server takes its settings from command-line flags, environment variables and config.json (or the MLX Bar app).
          </p>
        ) : null}
        {!schema ? <p className="muted">No settings schema was bundled with this build.</p> : null}
        {general.length > 0 ? (
          <ul className="issues" data-testid="settings-general-issues">
            {general.map((i) => <li key={`${i.path}${i.message}`}>{i.path ? <code>{i.path}</code> : null} {i.message}</li>)}
          </ul>
        ) : null}
        <form className="form" onSubmit={(e) => { e.preventDefault(); if (!readOnly && issues.length === 0) void save(); }}>
          {fields.map((f, i) => {
            const msgs = byPath.get(f.pointer) ?? [];
            const overriddenBy = overrides[settingPathOf(f)];
            const isKey = settingPathOf(f) === 'apiKey' && backend.kind === 'http';
            const heading = f.group && f.group !== fields[i - 1]?.group ? <h3 className="group-title" key={`g-${f.group}`}>{f.group}</h3> : null;
            return [
              heading,
              <div key={f.pointer} className={`field${msgs.length ? ' has-error' : ''}`} data-pointer={f.pointer}>
                <label htmlFor={`setting-${f.path.join('-')}`}>{f.label}{f.required ? <span className="req" aria-hidden="true"> *</span> : null}</label>
                <FieldInput
                  field={f}
                  value={getAt(values, f.path)}
                  invalid={msgs.length > 0}
                  placeholder={isKey ? (meta.apiKeySet && !clearKey ? 'a key is stored — leave empty to keep it' : 'no key') : undefined}
                  onChange={(v) => edit(f, v)}
                />
                {isKey && meta.apiKeySet ? (
                  <label className="switch">
                    <input type="checkbox" checked={clearKey} data-testid="settings-clear-api-key" onChange={(e) => { setClearKey(e.target.checked); setDirty(true); }} />
                    <span>Remove the stored API key</span>
                  </label>
                ) : null}
                {overriddenBy ? (
                  <div className="field-help" data-testid="field-override">Overridden by <code>{overriddenBy}</code> in this launch: the saved value applies when it is not given.</div>
                ) : null}
                {msgs.length ? (
                  <div className="field-error" role="alert" data-testid="field-error">{msgs.join('; ')}</div>
                ) : f.description || bytesHint(f, getAt(values, f.path)) ? (
                  <div className="field-help">{[bytesHint(f, getAt(values, f.path)), f.description].filter(Boolean).join(' · ')}</div>
                ) : null}
              </div>,
            ];
          })}
          <div className="form-actions">
            <button type="submit" className="btn primary" disabled={readOnly || saving || issues.length > 0 || !dirty} data-testid="settings-save">
              {saving ? 'Saving…' : 'Save'}
            </button>
            <button type="button" className="btn" disabled={!dirty} onClick={() => { void backend.load().then((r) => { if (r) apply(r); else setValues(defaults); setDirty(false); }); }}>
              Revert
            </button>
            <span className="muted">{issues.length > 0 ? 'Fix the problems above before saving.' : dirty ? 'Unsaved changes.' : ''}</span>
          </div>
        </form>
      </Panel>
    </main>
  );
}
