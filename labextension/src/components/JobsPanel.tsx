import { HTMLSelect, InputGroup } from '@jupyterlab/ui-components';
import React, { useState } from 'react';
import { Job } from '../api';
import { useApi, useHost } from '../context';
import { jobSource } from '../forms';
import { usePoll } from '../poll';
import { ComputeFields, computeRequest, useCompute } from './ComputeFields';
import { LiveLog } from './LiveLog';
import {
  ActionButton,
  basename,
  Disclosure,
  dnsName,
  Empty,
  ErrorBox,
  EventList,
  Field,
  fmtDuration,
  fmtTime,
  PanelToolbar,
  rowClick,
  StatusBadge,
  useAction,
  useExpanded
} from './common';

export function JobForm(props: { onSubmitted: (job: Job) => void; onClose: () => void }): JSX.Element {
  const api = useApi();
  const host = useHost();
  const compute = useCompute({ gpus: 1 });
  const current = host.currentNotebook();
  const [name, setName] = useState(current ? dnsName(basename(current)) : '');
  const [source, setSource] = useState(current ?? '');
  const [workers, setWorkers] = useState('1');
  const action = useAction();

  const submit = async () => {
    await action.run(async () => {
      const w = Number(workers);
      if (!Number.isInteger(w) || w < 1) {
        throw new Error('Workers: a whole number, 1 or more');
      }
      const job = await api.submitJob({
        name: name.trim(),
        ...jobSource(source),
        ...computeRequest(compute),
        workers: w
      });
      props.onSubmitted(job);
    });
  };

  return (
    <form
      className="kl-form"
      aria-label="Submit job"
      onSubmit={e => {
        e.preventDefault();
        void submit();
      }}
    >
      <Field label="Name">
        {id => (
          <InputGroup id={id} value={name} placeholder="train-resnet" required onChange={e => setName(e.currentTarget.value)} />
        )}
      </Field>
      <Field label="Source" hint="a notebook (.ipynb) or a Python script (.py) in your home">
        {id => (
          <InputGroup id={id} value={source} placeholder="train.py" required onChange={e => setSource(e.currentTarget.value)} />
        )}
      </Field>
      <ComputeFields compute={compute}>
        <Field label="Workers">
          {id => (
            <input
              id={id}
              className="jp-mod-styled kl-number"
              type="number"
              min={1}
              value={workers}
              onChange={e => setWorkers(e.currentTarget.value)}
            />
          )}
        </Field>
      </ComputeFields>
      <ErrorBox error={action.error} onDismiss={action.clear} />
      <div className="kl-form-buttons">
        <ActionButton label="Submit" submit accept busy={action.busy} />
        <ActionButton label="Close" onClick={props.onClose} />
      </div>
    </form>
  );
}

const LIVE = ['Pending', 'Running', 'Cancelling'];

function JobDetails(props: { job: Job; active: boolean; logKey: number }): JSX.Element {
  const { job } = props;
  const api = useApi();
  const pending = job.status === 'Pending';
  const details = usePoll(() => api.getJob(job.name), {
    interval: 5000,
    active: props.active,
    deps: [job.name]
  });
  const why = usePoll(() => (pending ? api.jobPending(job.name) : Promise.resolve(null)), {
    interval: 5000,
    active: props.active,
    deps: [job.name, pending]
  });
  const workers = Math.max(1, job.workers ?? 1);
  const [worker, setWorker] = useState('0');
  const events = details.data?.events ?? [];
  const reasons = why.data?.reasons ?? [];
  return (
    <div className="kl-details" id={`kl-job-${job.name}`}>
      {pending && (
        <div className="kl-pending" data-testid="kubelab-pending-reason">
          {why.data
            ? reasons.length
              ? reasons.join('\n')
              : 'Waiting to be scheduled (no reason reported yet).'
            : 'Asking the cluster why…'}
        </div>
      )}
      <ErrorBox error={why.error} />
      {workers > 1 && (
        <Field label="Worker">
          {id => (
            <HTMLSelect
              id={id}
              value={worker}
              onChange={e => setWorker(e.currentTarget.value)}
              options={Array.from({ length: workers }, (_, i) => ({ value: String(i), label: `worker ${i}` }))}
            />
          )}
        </Field>
      )}
      {props.logKey > 0 && (
        <LiveLog
          fetch={() => api.jobLogs(job.name, Number(worker))}
          live={LIVE.includes(job.status)}
          label={`Log of ${job.name}, worker ${worker}`}
          deps={[job.name, worker, props.logKey]}
        />
      )}
      <h4 className="kl-subtitle">Events</h4>
      <ErrorBox error={details.error} />
      {details.data && events.length === 0 && <Empty>No events.</Empty>}
      <EventList events={events} />
    </div>
  );
}

function JobRow(props: {
  job: Job;
  expanded: boolean;
  onToggle: (open?: boolean) => void;
  active: boolean;
  refresh: () => Promise<void>;
}): JSX.Element {
  const { job } = props;
  const api = useApi();
  const host = useHost();
  const action = useAction(props.refresh);
  const [logKey, setLogKey] = useState(0);
  const finished = ['Succeeded', 'Failed', 'Cancelled'].includes(job.status);
  return (
    <li
      className="kl-row"
      data-testid="kubelab-row"
      data-name={job.name}
      data-status={job.status}
      onClick={rowClick(() => props.onToggle())}
    >
      <div className="kl-row-line">
        <Disclosure name={job.name} expanded={props.expanded} onToggle={() => props.onToggle()} controls={`kl-job-${job.name}`} />
        <StatusBadge status={job.status} />
      </div>
      <div className="kl-meta">
        {job.kind === 'PyTorchJob' ? 'PyTorchJob' : 'Job'} · {job.workers ?? 1} worker{(job.workers ?? 1) === 1 ? '' : 's'}
        {job.resource_group ? ` · ${job.resource_group}` : ''}
        {job.gpus ? ` · ${job.gpus} GPU${job.gpus === 1 ? '' : 's'}` : ''} · started {fmtTime(job.started)}
        {job.duration_seconds !== null ? ` · ${fmtDuration(job.duration_seconds)}` : ''}
      </div>
      {job.path && <div className="kl-meta kl-path">{job.path}</div>}
      {(job.status === 'Failed' || job.status === 'Pending') && (job.message || job.reason) && (
        <div className="kl-reason">{job.message || job.reason}</div>
      )}
      <div className="kl-row-actions">
        <ActionButton
          label="Logs"
          onClick={() => {
            props.onToggle(true);
            setLogKey(k => k + 1);
          }}
        />
        {job.model_artifact && finished && (
          <ActionButton label="Show model" title={job.model_artifact} onClick={() => host.revealFile(job.model_artifact!)} />
        )}
        {!finished && job.status !== 'Cancelling' && (
          <ActionButton label="Cancel job" busy={action.busy} onClick={() => void action.run(() => api.cancelJob(job.name))} />
        )}
        <ActionButton label="Delete" warn busy={action.busy} onClick={() => void action.run(() => api.deleteJob(job.name))} />
      </div>
      <ErrorBox error={action.error} onDismiss={action.clear} />
      {props.expanded && <JobDetails job={job} active={props.active} logKey={logKey} />}
    </li>
  );
}

export function JobsPanel(props: { active: boolean }): JSX.Element {
  const api = useApi();
  const list = usePoll(() => api.listJobs(), { interval: 5000, active: props.active });
  const [form, setForm] = useState(false);
  const [expanded, toggle] = useExpanded();
  return (
    <div className="kl-panel-body">
      <PanelToolbar onRefresh={() => void list.refresh()} busy={list.loading}>
        {!form && <ActionButton label="Submit job" accept onClick={() => setForm(true)} />}
      </PanelToolbar>
      {form && (
        <JobForm
          onClose={() => setForm(false)}
          onSubmitted={job => {
            setForm(false);
            toggle(job.name, true);
            void list.refresh();
          }}
        />
      )}
      <ErrorBox error={list.error} />
      {list.data && list.data.jobs.length === 0 && <Empty>No jobs. Train with Submit job.</Empty>}
      <ul className="kl-list" aria-label="Jobs">
        {list.data?.jobs.map(j => (
          <JobRow
            key={j.name}
            job={j}
            expanded={expanded.has(j.name)}
            onToggle={(open?: boolean) => toggle(j.name, open)}
            active={props.active}
            refresh={list.refresh}
          />
        ))}
      </ul>
    </div>
  );
}
