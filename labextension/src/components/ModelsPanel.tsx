import { HTMLSelect, InputGroup } from '@jupyterlab/ui-components';
import React, { useState } from 'react';
import { Model, ModelVersion } from '../api';
import { useApi } from '../context';
import { usePoll } from '../poll';
import {
  ActionButton,
  Disclosure,
  Empty,
  ErrorBox,
  Field,
  fmtTime,
  PanelToolbar,
  rowClick,
  useAction,
  useExpanded
} from './common';

const FORMATS = ['sklearn', 'xgboost', 'lightgbm', 'onnx', 'torchscript', 'safetensors'];

export function RegisterModelForm(props: {
  models: Model[];
  onRegistered: (v: ModelVersion) => void;
  onClose: () => void;
}): JSX.Element {
  const api = useApi();
  const [name, setName] = useState('');
  const [artifact, setArtifact] = useState('');
  const [format, setFormat] = useState('');
  const action = useAction();
  const submit = () =>
    void action.run(async () => {
      const a = artifact.trim();
      const v = await api.registerModel({
        name: name.trim(),
        ...(a.startsWith('s3://') ? { uri: a } : { path: a }),
        ...(format ? { format: format as 'onnx' } : {})
      });
      props.onRegistered(v);
    });
  return (
    <form
      className="kl-form"
      aria-label="Register version"
      onSubmit={e => {
        e.preventDefault();
        submit();
      }}
    >
      <Field label="Model" hint="a new name, or an existing model's for a new version">
        {id => (
          <>
            <InputGroup
              id={id}
              value={name}
              placeholder="iris"
              list="kl-model-names"
              required
              onChange={e => setName(e.currentTarget.value)}
            />
            <datalist id="kl-model-names">
              {props.models.map(m => (
                <option key={m.name} value={m.name} />
              ))}
            </datalist>
          </>
        )}
      </Field>
      <Field label="Artifact" hint="a file or folder in your home (models/iris.onnx), or an s3:// URI">
        {id => (
          <InputGroup id={id} value={artifact} placeholder="models/iris.onnx" required onChange={e => setArtifact(e.currentTarget.value)} />
        )}
      </Field>
      <Field label="Format">
        {id => (
          <HTMLSelect
            id={id}
            value={format}
            onChange={e => setFormat(e.currentTarget.value)}
            options={[{ value: '', label: 'Detect' }, ...FORMATS.map(f => ({ value: f, label: f }))]}
          />
        )}
      </Field>
      {action.busy && <p className="kl-muted">Validating the model (it is loaded in a sandbox)…</p>}
      <ErrorBox error={action.error} onDismiss={action.clear} />
      <div className="kl-form-buttons">
        <ActionButton label="Register" submit accept busy={action.busy} />
        <ActionButton label="Close" onClick={props.onClose} />
      </div>
    </form>
  );
}

function AliasForm(props: { model: Model; refresh: () => Promise<void> }): JSX.Element {
  const api = useApi();
  const [alias, setAlias] = useState('production');
  const [version, setVersion] = useState(String(props.model.latest_version ?? ''));
  const action = useAction(props.refresh);
  return (
    <form
      className="kl-form kl-inline-form"
      aria-label={`Set an alias of ${props.model.name}`}
      onSubmit={e => {
        e.preventDefault();
        void action.run(() => api.setAlias(props.model.name, alias.trim(), Number(version)));
      }}
    >
      <div className="kl-field-row">
        <Field label="Alias">
          {id => <InputGroup id={id} value={alias} onChange={e => setAlias(e.currentTarget.value)} />}
        </Field>
        <Field label="Version">
          {id => (
            <HTMLSelect
              id={id}
              value={version}
              onChange={e => setVersion(e.currentTarget.value)}
              options={[...props.model.versions]
                .sort((a, b) => b.version - a.version)
                .map(v => ({ value: String(v.version), label: `v${v.version}` }))}
            />
          )}
        </Field>
      </div>
      <ErrorBox error={action.error} onDismiss={action.clear} />
      <div className="kl-form-buttons">
        <ActionButton label="Set alias" submit busy={action.busy} />
      </div>
    </form>
  );
}

function VersionItem(props: {
  model: Model;
  version: ModelVersion;
  onDeploy: (version: number) => void;
  busy: boolean;
}): JSX.Element {
  const v = props.version;
  const verdict = v.validation?.status ?? 'unknown';
  const aliases = Object.entries(props.model.aliases)
    .filter(([, n]) => n === v.version)
    .map(([a]) => a);
  const lineage = Object.entries(v.lineage ?? {});
  const metrics = Object.entries(v.metrics ?? {});
  return (
    <li className="kl-version" data-testid="kubelab-version" data-name={String(v.version)} data-status={verdict}>
      <div className="kl-row-line">
        <strong>v{v.version}</strong>
        <span className="kl-muted">{v.format}</span>
        <span className={`kl-verdict kl-verdict-${verdict}`} data-testid="kubelab-verdict" title={v.validation?.reason ?? ''}>
          {verdict}
        </span>
        {aliases.map(a => (
          <span key={a} className="kl-tag">
            {a}
          </span>
        ))}
      </div>
      {v.validation?.reason && (
        <div className={verdict === 'valid' ? 'kl-meta' : 'kl-reason'}>{v.validation.reason}</div>
      )}
      {lineage.length > 0 && (
        <div className="kl-meta">from {lineage.map(([k, val]) => `${k} ${val}`).join(' · ')}</div>
      )}
      {metrics.length > 0 && (
        <div className="kl-meta">{metrics.map(([k, val]) => `${k}=${val}`).join(' · ')}</div>
      )}
      {v.served_by && v.served_by.length > 0 && <div className="kl-meta">served by {v.served_by.join(', ')}</div>}
      <div className="kl-meta kl-muted">registered {fmtTime(v.created)}</div>
      {verdict === 'valid' && (
        <div className="kl-row-actions">
          <ActionButton label="Deploy" title={`Serve v${v.version}`} busy={props.busy} onClick={() => props.onDeploy(v.version)} />
        </div>
      )}
    </li>
  );
}

/**
 * Deploy a version: a new inference service named after the model, or, where
 * one already serves the model, a rolling switch of that service to the version.
 */
function useDeploy(model: Model, refresh: () => Promise<void>) {
  const api = useApi();
  const action = useAction(refresh);
  const [note, setNote] = useState('');
  const deploy = (version: number | 'latest') =>
    void action.run(async () => {
      setNote('');
      const { services } = await api.listServices();
      const serving = services.find(x => x.model === model.name);
      if (serving) {
        await api.updateService(serving.name, { model: model.name, version });
        setNote(`Switching service ${serving.name} to ${version === 'latest' ? 'the latest version' : `v${version}`}.`);
      } else {
        const s = await api.deploy({ name: model.name, model: model.name, version });
        setNote(`Deploying ${s.model} v${s.version ?? '?'} as service ${s.name}: see Services.`);
      }
    });
  return { deploy, action, note };
}

function ModelRow(props: {
  model: Model;
  expanded: boolean;
  onToggle: () => void;
  refresh: () => Promise<void>;
}): JSX.Element {
  const { model } = props;
  const { deploy, action, note } = useDeploy(model, props.refresh);
  const aliases = Object.entries(model.aliases);
  const latest = model.versions.find(v => v.version === model.latest_version);
  return (
    <li
      className="kl-row"
      data-testid="kubelab-row"
      data-name={model.name}
      onClick={rowClick(props.onToggle)}
    >
      <div className="kl-row-line">
        <Disclosure name={model.name} expanded={props.expanded} onToggle={props.onToggle} controls={`kl-model-${model.name}`} />
        {model.latest_version !== null && model.latest_version !== undefined && (
          <span className="kl-muted">v{model.latest_version}</span>
        )}
        {aliases.map(([a, n]) => (
          <span key={a} className="kl-tag">
            {a}→v{n}
          </span>
        ))}
      </div>
      {(model.served_by ?? []).length > 0 && (
        <div className="kl-meta">
          served by {(model.served_by ?? []).map(s => `${s.service} (v${s.version})`).join(', ')}
        </div>
      )}
      <div className="kl-row-actions">
        <ActionButton
          label="Deploy"
          title="Serve the latest version"
          busy={action.busy}
          disabled={!latest || latest.validation?.status !== 'valid'}
          onClick={() => deploy('latest')}
        />
      </div>
      <div role="status" className="kl-muted">
        {note}
      </div>
      <ErrorBox error={action.error} onDismiss={action.clear} />
      {props.expanded && (
        <div className="kl-details" id={`kl-model-${model.name}`}>
          <h4 className="kl-subtitle">Versions</h4>
          <ul className="kl-list">
            {[...model.versions]
              .sort((a, b) => b.version - a.version)
              .map(v => (
                <VersionItem key={v.version} model={model} version={v} onDeploy={deploy} busy={action.busy} />
              ))}
          </ul>
          {model.versions.length > 0 && <AliasForm model={model} refresh={props.refresh} />}
        </div>
      )}
    </li>
  );
}

export function ModelsPanel(props: { active: boolean; onDeployed?: () => void }): JSX.Element {
  const api = useApi();
  const list = usePoll(() => api.listModels(), { interval: 10_000, active: props.active });
  const [form, setForm] = useState(false);
  const [expanded, toggle] = useExpanded();
  const models = list.data?.models ?? [];
  return (
    <div className="kl-panel-body">
      <PanelToolbar onRefresh={() => void list.refresh()} busy={list.loading}>
        {!form && <ActionButton label="Register version" accept onClick={() => setForm(true)} />}
      </PanelToolbar>
      {form && (
        <RegisterModelForm
          models={models}
          onClose={() => setForm(false)}
          onRegistered={v => {
            setForm(false);
            toggle(v.model, true);
            void list.refresh();
          }}
        />
      )}
      <ErrorBox error={list.error} />
      {list.data && models.length === 0 && <Empty>No models. Register one from a file in your home.</Empty>}
      <ul className="kl-list" aria-label="Models">
        {models.map(m => (
          <ModelRow
            key={m.name}
            model={m}
            expanded={expanded.has(m.name)}
            onToggle={() => toggle(m.name)}
            refresh={async () => {
              await list.refresh();
              props.onDeployed?.();
            }}
          />
        ))}
      </ul>
    </div>
  );
}
