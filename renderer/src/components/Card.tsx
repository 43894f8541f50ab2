import type { ReactNode } from 'react';

export function Stat(props: { label: string; value: string; sub?: ReactNode; testId?: string; tone?: 'ok' | 'warn' | 'bad' }) {
  return (
    <div className={`card stat${props.tone ? ` tone-${props.tone}` : ''}`} data-testid={props.testId}>
      <div className="stat-label">{props.label}</div>
      <div className="stat-value num">{props.value}</div>
      <div className="stat-sub">{props.sub ?? '\u00a0'}</div>
    </div>
  );
}

export function Panel(props: { title: string; right?: ReactNode; children: ReactNode; className?: string; testId?: string }) {
  return (
    <section className={`card panel ${props.className ?? ''}`} data-testid={props.testId}>
      <header className="panel-head">
        <h2>{props.title}</h2>
        {props.right ? <div className="panel-right">{props.right}</div> : null}
      </header>
      {props.children}
    </section>
  );
}
