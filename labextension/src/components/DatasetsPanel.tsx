import { fileIcon, folderIcon, InputGroup } from '@jupyterlab/ui-components';
import React, { useEffect, useState } from 'react';
import { DatasetListing, DatasetPreview } from '../api';
import { useApi, useHost } from '../context';
import { usePoll } from '../poll';
import {
  ActionButton,
  basename,
  dnsName,
  Empty,
  ErrorBox,
  Field,
  fmtBytes,
  fmtTime,
  PanelToolbar,
  rowClick,
  useAction
} from './common';

type Root = NonNullable<DatasetListing['roots']>[number];

/**
 * The object as a path of the Jupyter file browser (relative to the home),
 * or null when no mount under the home shows it.
 */
export function homePath(key: string, roots: Root[], home: string | undefined): string | null {
  if (!home) {
    return null;
  }
  const h = home.replace(/\/+$/, '');
  for (const root of roots) {
    if (!key.startsWith(root.prefix)) {
      continue;
    }
    const mount = root.path.replace(/\/+$/, '');
    if (mount !== h && !mount.startsWith(h + '/')) {
      return null;
    }
    const rel = [mount.slice(h.length).replace(/^\/+/, ''), key.slice(root.prefix.length)]
      .filter(Boolean)
      .join('/');
    return rel.replace(/\/+$/, '');
  }
  return null;
}

/**
 * The prefix to list: the folder's, plus what the Search box holds (a prefix
 * search). At the top (no folder), a search that names no root looks in the
 * home (the first writable root).
 */
export function searchPrefix(prefix: string, search: string, roots: Root[]): string {
  const q = search.replace(/^\/+/, '');
  if (prefix || !q) {
    return prefix + q;
  }
  if (roots.some(r => q.startsWith(r.prefix) || r.prefix.startsWith(q))) {
    return q;
  }
  const home = roots.find(r => r.writable) ?? roots[0];
  return home ? home.prefix + q : q;
}

/** The folder part of a prefix (what a search result's name is shown relative to). */
function displayBase(prefix: string): string {
  const i = prefix.lastIndexOf('/');
  return i >= 0 ? prefix.slice(0, i + 1) : '';
}

function cell(value: unknown): string {
  if (value === null || value === undefined) {
    return '';
  }
  if (typeof value === 'object') {
    return JSON.stringify(value);
  }
  return String(value);
}

export function PreviewTable(props: { preview: DatasetPreview }): JSX.Element {
  const p = props.preview;
  const total = p.total_rows !== null && p.total_rows !== undefined ? ` of ${p.total_rows}` : p.truncated ? '+' : '';
  return (
    <div className="kl-preview">
      <div className="kl-meta">
        {p.format} · {p.row_count}
        {total} rows · {p.total_columns} columns · read {fmtBytes(p.bytes_read)} in {p.s3_requests} request
        {p.s3_requests === 1 ? '' : 's'}
      </div>
      <div className="kl-table-scroll" tabIndex={0} aria-label="Preview">
        <table className="kl-table" data-testid="kubelab-preview">
          <thead>
            <tr>
              {p.columns.map(c => (
                <th key={c.name} scope="col" title={c.type}>
                  {c.name}
                  <div className="kl-coltype">{c.type}</div>
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {p.rows.map((row, i) => (
              <tr key={i}>
                {p.columns.map(c => (
                  <td key={c.name}>{cell(row[c.name])}</td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </div>
  );
}

function RegisterDatasetForm(props: { uri: string; onClose: () => void; onDone: (name: string) => void }): JSX.Element {
  const api = useApi();
  const [name, setName] = useState(dnsName(basename(props.uri)));
  const [description, setDescription] = useState('');
  const action = useAction();
  return (
    <form
      className="kl-form kl-inline-form"
      aria-label="Register dataset"
      onSubmit={e => {
        e.preventDefault();
        void action.run(async () => {
          const d = await api.registerDataset({
            name: name.trim(),
            uri: props.uri,
            description: description.trim() || null
          });
          props.onDone(d.name);
        });
      }}
    >
      <Field label="Name">
        {id => <InputGroup id={id} value={name} required onChange={e => setName(e.currentTarget.value)} />}
      </Field>
      <Field label="Location">
        {id => <InputGroup id={id} value={props.uri} readOnly />}
      </Field>
      <Field label="Description">
        {id => <InputGroup id={id} value={description} onChange={e => setDescription(e.currentTarget.value)} />}
      </Field>
      <ErrorBox error={action.error} onDismiss={action.clear} />
      <div className="kl-form-buttons">
        <ActionButton label="Register" submit accept busy={action.busy} />
        <ActionButton label="Close" onClick={props.onClose} />
      </div>
    </form>
  );
}

function ObjectDetails(props: { objectKey: string; filePath: string | null }): JSX.Element {
  const api = useApi();
  const host = useHost();
  const [preview, setPreview] = useState<DatasetPreview | null>(null);
  const [note, setNote] = useState('');
  const [register, setRegister] = useState(false);
  const loading = useAction();
  const action = useAction();
  useEffect(() => {
    setPreview(null);
    void loading.run(async () => setPreview(await api.preview(props.objectKey)));
  }, [props.objectKey]);
  return (
    <div className="kl-details">
      <div className="kl-row-actions">
        <ActionButton
          label="Copy snippet"
          busy={action.busy}
          onClick={() =>
            void action.run(async () => {
              const s = await api.snippet(props.objectKey);
              host.copy(s.code.path ?? s.code.s3 ?? s.code.boto3);
              setNote('Copied the snippet to the clipboard.');
            })
          }
        />
        {props.filePath !== null && (
          <ActionButton label="Open in file browser" onClick={() => host.revealFile(props.filePath!)} />
        )}
        {!register && <ActionButton label="Register dataset" onClick={() => setRegister(true)} />}
      </div>
      <div role="status" className="kl-muted">
        {note}
      </div>
      <ErrorBox error={action.error} onDismiss={action.clear} />
      {register && (
        <RegisterDatasetForm
          uri={props.objectKey}
          onClose={() => setRegister(false)}
          onDone={name => {
            setRegister(false);
            setNote(`Registered as dataset ${name}.`);
          }}
        />
      )}
      {loading.busy && <p className="kl-muted">Reading a preview…</p>}
      <ErrorBox error={loading.error} />
      {preview && <PreviewTable preview={preview} />}
    </div>
  );
}

export function DatasetsPanel(props: { active: boolean }): JSX.Element {
  const api = useApi();
  const [prefix, setPrefix] = useState('');
  const [prefixText, setPrefixText] = useState('');
  const [search, setSearch] = useState('');
  const [query, setQuery] = useState('');
  const [tokens, setTokens] = useState<Array<string | null>>([null]);
  const [selected, setSelected] = useState<string | null>(null);
  const token = tokens[tokens.length - 1];

  useEffect(() => {
    // Search as one types (a prefix search on the server), a moment after the last key.
    const t = setTimeout(() => setQuery(search), 300);
    return () => clearTimeout(t);
  }, [search]);

  const roots = usePoll(() => api.browse(''), { interval: 300_000 });
  const workspace = usePoll(() => api.workspace(), { interval: 300_000 });
  const rootList = roots.data?.roots ?? [];
  const effective = searchPrefix(prefix, query, rootList);
  // A search lists every object whose key starts with it, below the folder too.
  const recursive = query !== '';
  const listing = usePoll(() => api.browse(effective, token, 100, recursive), {
    interval: 30_000,
    active: props.active,
    deps: [effective, token, recursive]
  });

  const go = (p: string) => {
    setPrefix(p);
    setPrefixText(p);
    setSearch('');
    setQuery('');
    setTokens([null]);
    setSelected(null);
  };
  const data = listing.data;
  const folders = data?.prefix === '' ? (data?.roots ?? []).map(r => ({ prefix: r.prefix, name: r.name })) : (data?.folders ?? []);

  return (
    <div className="kl-panel-body">
      <PanelToolbar onRefresh={() => void listing.refresh()} busy={listing.loading}>
        {prefix !== '' && (
          <ActionButton label="Up" title="Up one level" onClick={() => go(data?.parent ?? '')} />
        )}
      </PanelToolbar>
      <form
        className="kl-form kl-browse-form"
        aria-label="Browse"
        onSubmit={e => {
          e.preventDefault();
          // Enter in Prefix opens that folder; in Search it only searches (at once).
          const active = document.activeElement as HTMLInputElement | null;
          if (active?.type === 'search') {
            setQuery(search);
          } else {
            go(prefixText.trim());
          }
        }}
      >
        <div className="kl-field-row">
        <Field label="Prefix">
          {id => (
            <InputGroup
              id={id}
              value={prefixText}
              placeholder="datasets/"
              onChange={e => setPrefixText(e.currentTarget.value)}
              onKeyDown={e => {
                // The form has two fields and no submit button: no implicit submission on Enter.
                if (e.key === 'Enter') {
                  e.preventDefault();
                  go(prefixText.trim());
                }
              }}
            />
          )}
        </Field>
        <Field label="Search">
          {id => (
            <InputGroup
              id={id}
              type="search"
              value={search}
              placeholder="paths starting with…"
              onChange={e => {
                setSearch(e.currentTarget.value);
                setTokens([null]);
              }}
            />
          )}
        </Field>
        </div>
      </form>
      <ErrorBox error={listing.error} />
      {data && folders.length === 0 && data.objects.length === 0 && <Empty>Nothing here.</Empty>}
      <ul className="kl-list kl-files" aria-label="Folders and files">
        {folders.map(f => (
          <li key={f.prefix} className="kl-row kl-folder" data-testid="kubelab-row" data-name={f.prefix} data-kind="folder">
            <button type="button" className="kl-link" onClick={() => go(f.prefix)}>
              <folderIcon.react tag="span" className="kl-file-icon" />
              {f.name}
            </button>
          </li>
        ))}
        {data?.objects.map(o => (
          <li
            key={o.key}
            className="kl-row kl-object"
            data-testid="kubelab-row"
            data-name={o.key}
            data-kind="object"
            onClick={rowClick(() => setSelected(selected === o.key ? null : o.key))}
          >
            <button
              type="button"
              className="kl-link"
              aria-expanded={selected === o.key}
              onClick={() => setSelected(selected === o.key ? null : o.key)}
            >
              <fileIcon.react tag="span" className="kl-file-icon" />
              {recursive ? o.key.slice(displayBase(effective).length) : o.name}
            </button>
            <span className="kl-muted">
              {' '}
              {fmtBytes(o.size)} · {fmtTime(o.last_modified)}
            </span>
            {selected === o.key && (
              <ObjectDetails objectKey={o.key} filePath={homePath(o.key, rootList, workspace.data?.home)} />
            )}
          </li>
        ))}
      </ul>
      {(tokens.length > 1 || data?.next_token) && (
        <div className="kl-pager">
          <ActionButton label="Previous page" disabled={tokens.length <= 1} onClick={() => setTokens(t => t.slice(0, -1))} />
          <span className="kl-muted">page {tokens.length}</span>
          <ActionButton
            label="Next page"
            disabled={!data?.next_token}
            onClick={() => data?.next_token && setTokens(t => [...t, data.next_token!])}
          />
        </div>
      )}
    </div>
  );
}
