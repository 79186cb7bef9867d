import { HTMLSelect, InputGroup } from '@jupyterlab/ui-components';
import React, { useEffect, useState } from 'react';
import { CronPreview, Run, Schedule } from '../api';
import { useApi, useHost } from '../context';
import { CRON_PRESETS, localTimeZone, parseParameters, presetOf } from '../forms';
import { usePoll } from '../poll';
import { FormRequests } from '../requests';
import { ComputeFields, computeRequest, useCompute } from './ComputeFields';
import { LiveLog } from './LiveLog';
import {
  ActionButton,
  basename,
  Disclosure,
  dnsName,
  Empty,
  ErrorBox,
  Field,
  fmtDuration,
  fmtTime,
  PanelToolbar,
  rowClick,
  StatusBadge,
  useAction,
  useExpanded
} from './common';

export interface IScheduleRequest {
  notebook: string;
}

/** The cron field with presets and the live next-run preview (GET cron). */
export function CronField(props: {
  value: string;
  timezone: string;
  onChange: (cron: string) => void;
  onPreview?: (preview: CronPreview | null) => void;
}): JSX.Element {
  const api = useApi();
  const [preview, setPreview] = useState<CronPreview | null>(null);
  const [error, setError] = useState<unknown>(null);
  const preset = presetOf(props.value);

  useEffect(() => {
    const cron = props.value.trim();
    if (!cron) {
      setPreview(null);
      setError(null);
      return;
    }
    let cancelled = false;
    const timer = setTimeout(() => {
      api
        .cron(cron, props.timezone.trim() || undefined, 3)
        .then(p => {
          if (!cancelled) {
            setPreview(p);
            setError(null);
            props.onPreview?.(p);
          }
        })
        .catch(e => {
          if (!cancelled) {
            setPreview(null);
            setError(e);
            props.onPreview?.(null);
          }
        });
    }, 300);
    return () => {
      cancelled = true;
      clearTimeout(timer);
    };
  }, [props.value, props.timezone]);

  return (
    <>
      <Field label="Repeat">
        {id => (
          <HTMLSelect
            id={id}
            value={preset}
            onChange={e => {
              const p = CRON_PRESETS.find(x => x.id === e.currentTarget.value);
              if (p && p.cron) {
                props.onChange(p.cron);
              }
            }}
            options={CRON_PRESETS.map(p => ({ value: p.id, label: p.label }))}
          />
        )}
      </Field>
      <Field label="Schedule" hint="minute hour day-of-month month day-of-week, or @daily">
        {id => (
          <InputGroup
            id={id}
            value={props.value}
            placeholder="0 6 * * 1-5"
            spellCheck={false}
            onChange={e => props.onChange(e.currentTarget.value)}
          />
        )}
      </Field>
      <ErrorBox error={error} />
      {preview && (
        <div className="kl-cron-preview">
          <span className="kl-muted">Next runs ({preview.timezone}):</span>
          <ul data-testid="kubelab-cron-preview" aria-label="Next runs">
            {preview.next_runs_local.map(t => (
              <li key={t}>{t.replace('T', ' ')}</li>
            ))}
          </ul>
        </div>
      )}
    </>
  );
}

/**
 * New schedule: name, notebook, cron (presets + preview), time zone, where the
 * runs run (a group without GPUs first, 0 GPUs), parameters.
 */
export function ScheduleForm(props: {
  notebook?: string;
  onCreated: (s: Schedule) => void;
  onClose: () => void;
}): JSX.Element {
  const api = useApi();
  const [notebook, setNotebook] = useState(props.notebook ?? '');
  const [name, setName] = useState(props.notebook ? dnsName(basename(props.notebook)) : '');
  const [cron, setCron] = useState('0 6 * * *');
  const [timezone, setTimezone] = useState(localTimeZone());
  const [params, setParams] = useState('');
  const compute = useCompute({ preferCpu: true, gpus: 0 });
  const action = useAction();

  useEffect(() => {
    if (props.notebook) {
      setNotebook(props.notebook);
      setName(dnsName(basename(props.notebook)));
    }
  }, [props.notebook]);

  const submit = async () => {
    await action.run(async () => {
      const parameters = parseParameters(params);
      const created = await api.createSchedule({
        name: name.trim(),
        notebook: notebook.trim(),
        schedule: cron.trim(),
        timezone: timezone.trim() || null,
        ...computeRequest(compute),
        parameters
      });
      props.onCreated(created);
    });
  };

  return (
    <form
      className="kl-form"
      aria-label="New schedule"
      onSubmit={e => {
        e.preventDefault();
        void submit();
      }}
    >
      <Field label="Name">
        {id => (
          <InputGroup
            id={id}
            value={name}
            placeholder="daily-report"
            required
            onChange={e => setName(e.currentTarget.value)}
          />
        )}
      </Field>
      <Field label="Notebook">
        {id => (
          <InputGroup
            id={id}
            value={notebook}
            placeholder="reports/daily.ipynb"
            required
            onChange={e => setNotebook(e.currentTarget.value)}
          />
        )}
      </Field>
      <CronField value={cron} timezone={timezone} onChange={setCron} />
      <Field label="Time zone">
        {id => (
          <InputGroup
            id={id}
            value={timezone}
            placeholder="Europe/Berlin"
            onChange={e => setTimezone(e.currentTarget.value)}
          />
        )}
      </Field>
      <ComputeFields compute={compute} />
      <Field label="Parameters" hint='name=value lines, or a JSON object such as {"alpha": 0.5}'>
        {id => (
          <textarea
            id={id}
            className="jp-mod-styled kl-textarea"
            rows={3}
            value={params}
            placeholder={'date="2025-01-31"\nalpha=0.5'}
            onChange={e => setParams(e.currentTarget.value)}
            onKeyDown={e => {
              if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
                e.preventDefault();
                void submit();
              }
            }}
          />
        )}
      </Field>
      <ErrorBox error={action.error} onDismiss={action.clear} />
      <div className="kl-form-buttons">
        <ActionButton label="Create" submit accept busy={action.busy} />
        <ActionButton label="Close" onClick={props.onClose} />
      </div>
    </form>
  );
}

const LIVE = ['Pending', 'Running', 'Cancelling'];

function RunRow(props: { schedule: string; run: Run }): JSX.Element {
  const { run } = props;
  const api = useApi();
  const host = useHost();
  const [logKey, setLogKey] = useState(0);
  const output = run.output_html || run.output_notebook;
  const failure = run.error
    ? `${run.error.ename ?? 'Error'}: ${run.error.evalue ?? ''}${
        run.error.cell !== undefined && run.error.cell !== null ? ` (cell ${run.error.cell})` : ''
      }`
    : run.status === 'Failed' || run.status === 'Pending'
      ? run.message || run.reason
      : null;
  return (
    <li className="kl-run" data-testid="kubelab-run" data-name={run.id} data-status={run.status}>
      <div className="kl-row-line">
        <StatusBadge status={run.status} />
        <span className="kl-run-id" title={run.id}>
          {run.trigger === 'manual' ? 'manual' : 'scheduled'} · {fmtTime(run.started ?? run.created)}
        </span>
        <span className="kl-muted" title="Duration">
          {fmtDuration(run.duration_seconds)}
        </span>
      </div>
      {failure && <div className="kl-reason">{failure}</div>}
      <div className="kl-row-actions">
        {output && (
          <ActionButton label="Open output" title={`Open ${output}`} onClick={() => host.openFile(output)} />
        )}
        {run.output_notebook && run.output_html && (
          <ActionButton
            label="Open notebook"
            title={`Open ${run.output_notebook}`}
            onClick={() => host.openFile(run.output_notebook!)}
          />
        )}
        <ActionButton label="Logs" onClick={() => setLogKey(k => k + 1)} />
      </div>
      {logKey > 0 && (
        <LiveLog
          fetch={() => api.runLogs(props.schedule, run.id)}
          live={LIVE.includes(run.status)}
          label={`Log of ${run.id}`}
          deps={[props.schedule, run.id, logKey]}
        />
      )}
    </li>
  );
}

function Runs(props: { schedule: string; active: boolean; refreshKey: number }): JSX.Element {
  const api = useApi();
  const runs = usePoll(() => api.listRuns(props.schedule), {
    interval: 5000,
    active: props.active,
    deps: [props.schedule, props.refreshKey]
  });
  return (
    <div className="kl-details" id={`kl-runs-${props.schedule}`}>
      <h4 className="kl-subtitle">Runs</h4>
      <ErrorBox error={runs.error} />
      {runs.data && runs.data.runs.length === 0 && <Empty>No runs yet.</Empty>}
      <ul className="kl-list">
        {runs.data?.runs.map(r => <RunRow key={r.id} schedule={props.schedule} run={r} />)}
      </ul>
    </div>
  );
}

function ScheduleRow(props: {
  schedule: Schedule;
  expanded: boolean;
  onToggle: () => void;
  active: boolean;
  refresh: () => Promise<void>;
}): JSX.Element {
  const { schedule: s } = props;
  const api = useApi();
  const [runsKey, setRunsKey] = useState(0);
  const action = useAction(props.refresh);
  const next = s.suspend ? 'suspended' : s.next_runs.length ? fmtTime(s.next_runs[0]) : '—';
  return (
    <li
      className="kl-row"
      data-testid="kubelab-row"
      data-name={s.name}
      data-suspended={String(s.suspend)}
      onClick={rowClick(props.onToggle)}
    >
      <div className="kl-row-line">
        <Disclosure
          name={s.name}
          expanded={props.expanded}
          onToggle={props.onToggle}
          controls={`kl-runs-${s.name}`}
        />
        {s.suspend && <StatusBadge status="Suspended" />}
        {s.active_runs.length > 0 && <StatusBadge status="Running" />}
      </div>
      <div className="kl-meta">
        <code>{s.schedule}</code> ({s.timezone}) · next: {next}
        {s.resource_group ? ` · ${s.resource_group}` : ''}
        {s.gpus ? ` · ${s.gpus} GPU${s.gpus === 1 ? '' : 's'}` : ''}
      </div>
      {s.notebook && <div className="kl-meta kl-path">{s.notebook}</div>}
      <div className="kl-row-actions">
        <ActionButton
          label="Run now"
          busy={action.busy}
          onClick={() =>
            void action.run(async () => {
              await api.runNow(s.name);
              if (!props.expanded) {
                props.onToggle(); // show the new run
              }
              setRunsKey(k => k + 1);
            })
          }
        />
        <ActionButton
          label={s.suspend ? 'Resume' : 'Suspend'}
          busy={action.busy}
          onClick={() => void action.run(() => api.updateSchedule(s.name, { suspend: !s.suspend }))}
        />
        <ActionButton
          label="Delete"
          warn
          busy={action.busy}
          onClick={() => void action.run(() => api.deleteSchedule(s.name))}
        />
      </div>
      <ErrorBox error={action.error} onDismiss={action.clear} />
      {props.expanded && <Runs schedule={s.name} active={props.active} refreshKey={runsKey} />}
    </li>
  );
}

export function SchedulesPanel(props: {
  active: boolean;
  requests?: FormRequests<IScheduleRequest>;
}): JSX.Element {
  const api = useApi();
  const list = usePoll(() => api.listSchedules(), { interval: 5000, active: props.active });
  const [form, setForm] = useState<{ notebook?: string } | null>(null);
  const [expanded, toggle] = useExpanded();

  useEffect(() => {
    const requests = props.requests;
    if (!requests) {
      return;
    }
    const take = () => {
      const r = requests.take();
      if (r) {
        setForm({ notebook: r.notebook });
      }
    };
    take();
    requests.requested.connect(take);
    return () => {
      requests.requested.disconnect(take);
    };
  }, [props.requests]);

  return (
    <div className="kl-panel-body">
      <PanelToolbar onRefresh={() => void list.refresh()} busy={list.loading}>
        {!form && <ActionButton label="New schedule" accept onClick={() => setForm({})} />}
      </PanelToolbar>
      {form && (
        <ScheduleForm
          notebook={form.notebook}
          onClose={() => setForm(null)}
          onCreated={s => {
            setForm(null);
            toggle(s.name, true);
            void list.refresh();
          }}
        />
      )}
      <ErrorBox error={list.error} />
      {list.data && list.data.schedules.length === 0 && (
        <Empty>No schedules. Schedule a notebook from its toolbar or with New schedule.</Empty>
      )}
      <ul className="kl-list" aria-label="Schedules">
        {list.data?.schedules.map(s => (
          <ScheduleRow
            key={s.name}
            schedule={s}
            expanded={expanded.has(s.name)}
            onToggle={() => toggle(s.name)}
            active={props.active}
            refresh={list.refresh}
          />
        ))}
      </ul>
    </div>
  );
}
