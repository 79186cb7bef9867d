import React from 'react';
import { Resources } from '../api';
import { useApi } from '../context';
import { usePoll } from '../poll';
import { Empty, ErrorBox, PanelToolbar } from './common';

type QuotaRow = Resources['quota'][number];

/** `3.5 of 8 cores`-like text of a quota row, from what Kubernetes wrote. */
function quotaText(q: QuotaRow): string {
  return `${q.used} of ${q.hard}`;
}

/** One resource's use as a bar (role=progressbar, so screen readers read it). */
export function QuotaBar(props: { quota: QuotaRow }): JSX.Element {
  const q = props.quota;
  const max = q.hard_value ?? 0;
  const now = q.used_value ?? 0;
  const pct = max > 0 ? Math.min(100, (now / max) * 100) : now > 0 ? 100 : 0;
  const level = pct >= 90 ? 'kl-full' : pct >= 70 ? 'kl-high' : '';
  return (
    <div className="kl-quota" data-testid="kubelab-quota" data-resource={q.resource}>
      <div className="kl-quota-label">
        <span className="kl-quota-name">{q.resource}</span>
        <span className="kl-muted">{quotaText(q)}</span>
      </div>
      <div
        className={`kl-bar ${level}`}
        role="progressbar"
        aria-label={q.resource}
        aria-valuemin={0}
        aria-valuemax={max}
        aria-valuenow={now}
        aria-valuetext={quotaText(q)}
      >
        <div className="kl-bar-fill" style={{ width: `${pct}%` }} />
      </div>
    </div>
  );
}

export function ResourcesView(props: { data: Resources }): JSX.Element {
  const { data } = props;
  return (
    <>
      <div className="kl-meta">
        Namespace <code>{data.namespace}</code> · <strong data-testid="kubelab-gpus-in-use">{data.gpus_in_use}</strong>{' '}
        GPU{data.gpus_in_use === 1 ? '' : 's'} in use
      </div>
      <h4 className="kl-subtitle">Quota</h4>
      {data.quota.length === 0 && <Empty>No quota is set for your namespace.</Empty>}
      {data.quota.map(q => (
        <QuotaBar key={q.resource} quota={q} />
      ))}
      <h4 className="kl-subtitle">Resource groups</h4>
      <table className="kl-table" aria-label="Resource groups">
        <thead>
          <tr>
            <th scope="col">Group</th>
            <th scope="col">Free GPUs</th>
            <th scope="col">Quota allows</th>
          </tr>
        </thead>
        <tbody>
          {data.groups.map(g => (
            <tr key={g.name} data-testid="kubelab-group" data-name={g.name}>
              <th scope="row" title={g.name}>
                {g.display_name || g.name}
                {g.max_gpus > 0 && <div className="kl-coltype">up to {g.max_gpus} per worker</div>}
              </th>
              <td>{g.gpu_resource ? (g.free_gpus ?? 'unknown') : '—'}</td>
              <td>{g.gpu_resource ? (g.gpu_quota_headroom ?? 'no limit') : '—'}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}

export function ResourcesPanel(props: { active: boolean }): JSX.Element {
  const api = useApi();
  const res = usePoll(() => api.resources(), { interval: 10_000, active: props.active });
  return (
    <div className="kl-panel-body">
      <PanelToolbar onRefresh={() => void res.refresh()} busy={res.loading} />
      <ErrorBox error={res.error} />
      {res.data && <ResourcesView data={res.data} />}
    </div>
  );
}
