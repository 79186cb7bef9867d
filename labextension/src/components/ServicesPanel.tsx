import React, { useState } from 'react';
import { InferenceService } from '../api';
import { useApi } from '../context';
import { usePoll } from '../poll';
import { LiveLog } from './LiveLog';
import {
  ActionButton,
  Disclosure,
  Empty,
  ErrorBox,
  EventList,
  Field,
  PanelToolbar,
  rowClick,
  StatusBadge,
  useAction,
  useExpanded
} from './common';

/**
 * The service's state: the server's `state` where the answer has one (GET
 * services/{name}), else from its replicas (the list answers without it).
 */
export function serviceState(s: InferenceService): string {
  if (s.state) {
    return s.state;
  }
  const want = s.replicas ?? 1;
  const ready = s.ready_replicas ?? 0;
  if (want === 0) {
    return 'Stopped';
  }
  if (ready >= want) {
    return 'Ready';
  }
  return ready > 0 ? 'Updating' : 'NotReady';
}

const EXAMPLE_REQUEST = '{\n  "data": [[5.1, 3.5, 1.4, 0.2]]\n}';

/** The JSON of the Request field; a clear message where it is not a JSON object. */
export function parseRequest(text: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new Error(`Request: not valid JSON (${(e as Error).message})`);
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) {
    throw new Error('Request: a JSON object, e.g. {"data": [[5.1, 3.5, 1.4, 0.2]]}');
  }
  return value as Record<string, unknown>;
}

function PredictForm(props: { service: string }): JSX.Element {
  const api = useApi();
  const [text, setText] = useState(EXAMPLE_REQUEST);
  const [response, setResponse] = useState<unknown>(null);
  const action = useAction();
  const send = () =>
    void action.run(async () => {
      setResponse(null);
      setResponse(await api.predict(props.service, parseRequest(text)));
    });
  return (
    <form
      className="kl-form"
      aria-label={`Test ${props.service}`}
      onSubmit={e => {
        e.preventDefault();
        send();
      }}
    >
      <Field label="Request" hint='rows as {"data": [[...]]}, or a V2 {"inputs": [...]}; Ctrl+Enter sends'>
        {id => (
          <textarea
            id={id}
            className="jp-mod-styled kl-textarea kl-code"
            rows={4}
            spellCheck={false}
            value={text}
            onChange={e => setText(e.currentTarget.value)}
            onKeyDown={e => {
              if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
                e.preventDefault();
                send();
              }
            }}
          />
        )}
      </Field>
      <div className="kl-form-buttons">
        <ActionButton label="Send" submit accept busy={action.busy} />
      </div>
      <ErrorBox error={action.error} onDismiss={action.clear} />
      {response !== null && (
        <pre className="kl-logs" data-testid="kubelab-predict-response" aria-label="Response" tabIndex={0}>
          {JSON.stringify(response, null, 2)}
        </pre>
      )}
    </form>
  );
}

function ServiceDetails(props: { service: InferenceService; active: boolean }): JSX.Element {
  const api = useApi();
  const details = usePoll(() => api.getService(props.service.name), {
    interval: 5000,
    active: props.active,
    deps: [props.service.name]
  });
  const events = details.data?.events ?? [];
  const [showLog, setShowLog] = useState(false);
  return (
    <div className="kl-details" id={`kl-service-${props.service.name}`}>
      <PredictForm service={props.service.name} />
      <div className="kl-row-actions">
        <ActionButton label="Logs" title="The model server's log" onClick={() => setShowLog(!showLog)} />
      </div>
      {showLog && (
        <LiveLog
          fetch={() => api.serviceLogs(props.service.name)}
          live={props.active}
          label={`Log of service ${props.service.name}`}
          deps={[props.service.name]}
        />
      )}
      <h4 className="kl-subtitle">Events</h4>
      <ErrorBox error={details.error} />
      {details.data && events.length === 0 && <Empty>No events.</Empty>}
      <EventList events={events} />
    </div>
  );
}

function ServiceRow(props: {
  service: InferenceService;
  expanded: boolean;
  onToggle: () => void;
  active: boolean;
  refresh: () => Promise<void>;
}): JSX.Element {
  const s = props.service;
  const api = useApi();
  const action = useAction(props.refresh);
  const state = serviceState(s);
  const served = s.model ? `${s.model} v${s.version ?? '?'}${s.alias ? ` (${s.alias})` : ''}` : '—';
  return (
    <li
      className="kl-row"
      data-testid="kubelab-row"
      data-name={s.name}
      data-status={state}
      onClick={rowClick(props.onToggle)}
    >
      <div className="kl-row-line">
        <Disclosure name={s.name} expanded={props.expanded} onToggle={props.onToggle} controls={`kl-service-${s.name}`} />
        <StatusBadge status={state} />
      </div>
      <div className="kl-meta">
        {served} · {s.ready_replicas ?? 0}/{s.replicas ?? 0} ready{s.format ? ` · ${s.format}` : ''}
      </div>
      <div className="kl-meta kl-path" title="The V2 infer URL inside the cluster">
        <code>{s.url}</code>
      </div>
      {(s.problems ?? []).map((p, i) => (
        <div key={i} className="kl-reason">
          {p}
        </div>
      ))}
      <div className="kl-row-actions">
        <ActionButton
          label="Rollback"
          busy={action.busy}
          disabled={s.previous_version === null || s.previous_version === undefined}
          title={
            s.previous_version ? `Go back to v${s.previous_version}` : 'No earlier version to go back to'
          }
          onClick={() => void action.run(() => api.rollback(s.name))}
        />
        <ActionButton label="Delete" warn busy={action.busy} onClick={() => void action.run(() => api.deleteService(s.name))} />
      </div>
      <ErrorBox error={action.error} onDismiss={action.clear} />
      {props.expanded && <ServiceDetails service={s} active={props.active} />}
    </li>
  );
}

export function ServicesPanel(props: { active: boolean; refreshKey?: number }): JSX.Element {
  const api = useApi();
  const list = usePoll(() => api.listServices(), {
    interval: 5000,
    active: props.active,
    deps: [props.refreshKey]
  });
  const [expanded, toggle] = useExpanded();
  return (
    <div className="kl-panel-body">
      <PanelToolbar onRefresh={() => void list.refresh()} busy={list.loading} />
      <ErrorBox error={list.error} />
      {list.data && list.data.services.length === 0 && <Empty>No services. Deploy a model from the Models panel.</Empty>}
      <ul className="kl-list" aria-label="Services">
        {list.data?.services.map(s => (
          <ServiceRow
            key={s.name}
            service={s}
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
