/**
 * Small building blocks shared by the panels: the toolbar with Refresh, the
 * error box, labelled fields, status badges, the log viewer, and a hook for
 * actions (busy state + readable errors + an immediate refresh after).
 */
import { Button, refreshIcon } from '@jupyterlab/ui-components';
import React, { useCallback, useId, useRef, useState } from 'react';

/** The readable text of anything thrown (ApiError carries the server's `message`). */
export function messageOf(error: unknown): string {
  if (!error) {
    return '';
  }
  if (error instanceof Error) {
    return error.message || error.name;
  }
  return String(error);
}

/** A readable error (the server's one-line `message`), announced to screen readers. */
export function ErrorBox(props: { error: unknown; onDismiss?: () => void }): JSX.Element | null {
  if (!props.error) {
    return null;
  }
  return (
    <div className="kl-error" role="alert">
      <span className="kl-error-text">{messageOf(props.error)}</span>
      {props.onDismiss && (
        <button type="button" className="kl-icon-button" aria-label="Dismiss" onClick={props.onDismiss}>
          ×
        </button>
      )}
    </div>
  );
}

/** The row of buttons at the top of each panel; it always has Refresh. */
export function PanelToolbar(props: {
  onRefresh: () => void;
  busy?: boolean;
  children?: React.ReactNode;
}): JSX.Element {
  return (
    <div className="kl-toolbar">
      <div className="kl-toolbar-actions">{props.children}</div>
      <Button
        className="kl-refresh"
        minimal
        small
        aria-label="Refresh"
        title="Refresh"
        onClick={() => props.onRefresh()}
      >
        <refreshIcon.react tag="span" className={props.busy ? 'kl-spin' : ''} />
      </Button>
    </div>
  );
}

/** A label (only its text, so it is the control's whole accessible name) and its control. */
export function Field(props: {
  label: string;
  hint?: React.ReactNode;
  children: (id: string) => React.ReactNode;
}): JSX.Element {
  const id = useId();
  return (
    <div className="kl-field">
      <label htmlFor={id}>{props.label}</label>
      {props.children(id)}
      {props.hint && <div className="kl-hint">{props.hint}</div>}
    </div>
  );
}

export function StatusBadge(props: { status?: string | null }): JSX.Element | null {
  if (!props.status) {
    return null;
  }
  const s = props.status.toLowerCase();
  return <span className={`kl-status kl-status-${s}`}>{props.status}</span>;
}

/**
 * A click on a row's free space expands or collapses it (buttons, fields,
 * logs and tables inside keep their own clicks); keyboard users have the
 * row's name button.
 */
export function rowClick(onToggle: () => void): (e: React.MouseEvent) => void {
  return e => {
    const target = e.target as HTMLElement;
    if (target.closest('button, a, input, select, textarea, label, pre, table, form, .kl-details')) {
      return;
    }
    onToggle();
  };
}

export function LogViewer(props: { text: string | null; label: string }): JSX.Element | null {
  if (props.text === null) {
    return null;
  }
  return (
    <pre className="kl-logs" data-testid="kubelab-logs" aria-label={props.label} tabIndex={0}>
      {props.text || '(the log is empty)'}
    </pre>
  );
}

/** A button that submits its form or runs an action; it is a real <button>. */
export function ActionButton(props: {
  label: string;
  onClick?: () => void;
  busy?: boolean;
  disabled?: boolean;
  submit?: boolean;
  accept?: boolean;
  warn?: boolean;
  title?: string;
}): JSX.Element {
  return (
    <Button
      type={props.submit ? 'submit' : 'button'}
      small
      className={`kl-button${props.accept ? ' kl-accept' : props.warn ? ' kl-warn' : ''}`}
      disabled={props.disabled || props.busy}
      aria-busy={props.busy || undefined}
      title={props.title}
      onClick={props.onClick}
    >
      {props.label}
    </Button>
  );
}

export interface IAction {
  /** Run an action: busy while it runs, its error kept for the ErrorBox. Resolves to whether it worked. */
  run: (action: () => Promise<unknown>) => Promise<boolean>;
  busy: boolean;
  error: unknown;
  clear: () => void;
}

export function useAction(after?: () => unknown): IAction {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const afterRef = useRef(after);
  afterRef.current = after;
  const run = useCallback(async (action: () => Promise<unknown>) => {
    setBusy(true);
    setError(null);
    try {
      await action();
      return true;
    } catch (e) {
      setError(e);
      return false;
    } finally {
      setBusy(false);
      void afterRef.current?.();
    }
  }, []);
  return { run, busy, error, clear: () => setError(null) };
}

/** `2025-01-31 06:00` in the browser's time zone. */
export function fmtTime(iso?: string | null): string {
  if (!iso) {
    return '—';
  }
  const d = new Date(iso);
  if (isNaN(d.getTime())) {
    return iso;
  }
  return d.toLocaleString(undefined, {
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit'
  });
}

/** `1h 2m 3s`. */
export function fmtDuration(seconds?: number | null): string {
  if (seconds === undefined || seconds === null) {
    return '—';
  }
  let s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  return [h ? `${h}h` : '', m ? `${m}m` : '', `${s}s`].filter(Boolean).join(' ');
}

export function fmtBytes(n?: number | null): string {
  if (n === undefined || n === null) {
    return '—';
  }
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

/** A DNS-1123 label from free text (a file name): what the server accepts as a name. */
export function dnsName(text: string, max = 52): string {
  const base = text
    .replace(/\.[^.]*$/, '')
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .replace(/-{2,}/g, '-');
  return base.slice(0, max).replace(/-+$/, '');
}

/** The last part of a path. */
export function basename(path: string): string {
  const parts = path.replace(/\/+$/, '').split('/');
  return parts[parts.length - 1] || path;
}

/** Kubernetes events, oldest first: the last `limit` of them, warnings marked. */
export function EventList(props: {
  events: Array<{ type?: string | null; reason?: string | null; message: string; object: string; count: number; time?: string | null }>;
  limit?: number;
}): JSX.Element {
  const limit = props.limit ?? 10;
  const shown = props.events.slice(-limit);
  const hidden = props.events.length - shown.length;
  return (
    <>
      {hidden > 0 && <p className="kl-muted">{hidden} earlier events not shown</p>}
      <ul className="kl-events">
        {shown.map((ev, i) => (
          <li key={i} className={ev.type === 'Warning' ? 'kl-warning' : ''}>
            <span className="kl-muted">{fmtTime(ev.time)}</span> <strong>{ev.reason}</strong> {ev.object}: {ev.message}
            {ev.count > 1 ? ` (×${ev.count})` : ''}
          </li>
        ))}
      </ul>
    </>
  );
}

/** An empty list's line. */
export function Empty(props: { children: React.ReactNode }): JSX.Element {
  return <p className="kl-empty">{props.children}</p>;
}

/** The name of a row as a button that expands the row's details. */
export function Disclosure(props: {
  name: string;
  expanded: boolean;
  onToggle: () => void;
  controls?: string;
}): JSX.Element {
  return (
    <button
      type="button"
      className="kl-disclosure"
      aria-expanded={props.expanded}
      aria-controls={props.controls}
      onClick={props.onToggle}
    >
      <span className="kl-caret" aria-hidden="true">
        {props.expanded ? '▾' : '▸'}
      </span>
      {props.name}
    </button>
  );
}

/** A set of expanded row names. */
export function useExpanded(): [Set<string>, (name: string, open?: boolean) => void] {
  const [set, setSet] = useState<Set<string>>(new Set());
  const toggle = useCallback((name: string, open?: boolean) => {
    setSet(prev => {
      const next = new Set(prev);
      const want = open ?? !next.has(name);
      if (want) {
        next.add(name);
      } else {
        next.delete(name);
      }
      return next;
    });
  }, []);
  return [set, toggle];
}
