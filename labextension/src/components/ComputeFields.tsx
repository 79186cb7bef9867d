/**
 * Where a job or a scheduled run runs: the "Resource group" picker (free GPUs
 * and quota headroom per group, from GET resources), its "Size" and, for a
 * group with GPUs, "GPUs". One hook holds the choice (`useCompute`), one
 * component draws it (`ComputeFields`), one function turns it into the
 * request's `resource_group`/`size`/`gpus` (`computeRequest`).
 */
import { HTMLSelect } from '@jupyterlab/ui-components';
import React, { useEffect, useMemo, useState } from 'react';
import { Resources, ResourceGroup, Workspace } from '../api';
import { useApi } from '../context';
import { IPolled, usePoll } from '../poll';
import { ErrorBox, Field } from './common';

type GroupUse = Resources['groups'][number];

/** `GPU A100: 2 GPUs free, quota allows 4 more` for the group picker. */
export function groupLabel(group: ResourceGroup, use?: GroupUse): string {
  const name = group.display_name || group.name;
  if (!group.max_gpus) {
    return `${name}: no GPUs`;
  }
  const parts: string[] = [];
  const free = use?.free_gpus;
  parts.push(free === null || free === undefined ? 'free GPUs unknown' : `${free} GPU${free === 1 ? '' : 's'} free`);
  const headroom = use?.gpu_quota_headroom;
  if (headroom !== null && headroom !== undefined) {
    parts.push(`quota allows ${headroom} more`);
  }
  return `${name}: ${parts.join(', ')}`;
}

/**
 * The group a form starts with: with `preferCpu`, the first group without
 * GPUs if there is one; else (or when every group has GPUs) the user's
 * default group, else the first.
 */
export function defaultGroup(workspace: Workspace, preferCpu = false): string {
  const groups = workspace.resource_groups ?? [];
  const cpu = preferCpu ? groups.find(g => !g.max_gpus) : undefined;
  return cpu?.name ?? workspace.default_resource_group ?? groups[0]?.name ?? '';
}

export interface IComputeDefaults {
  /** Start with the first group without GPUs (schedules: a report rarely needs one). */
  preferCpu?: boolean;
  /** The GPUs preset whenever a group with GPUs is picked (jobs 1, schedules 0). */
  gpus: number;
}

export interface ICompute {
  group: string;
  size: string;
  gpus: string;
  setGroup: (group: string) => void;
  setSize: (size: string) => void;
  setGpus: (gpus: string) => void;
  /** The user's groups (GET workspace) and the one picked. */
  groups: ResourceGroup[];
  selected: ResourceGroup | undefined;
  workspace: IPolled<Workspace>;
  resources: IPolled<Resources>;
}

/** The compute choice of a form, preset from the workspace when it arrives. */
export function useCompute(defaults: IComputeDefaults): ICompute {
  const api = useApi();
  const workspace = usePoll(() => api.workspace(), { interval: 60_000 });
  const resources = usePoll(() => api.resources(), { interval: 15_000 });
  const [group, setGroup] = useState('');
  const [size, setSize] = useState('');
  const [gpus, setGpus] = useState('0');
  const groups = workspace.data?.resource_groups ?? [];
  const selected = groups.find(g => g.name === group);

  useEffect(() => {
    if (!group && workspace.data) {
      setGroup(defaultGroup(workspace.data, defaults.preferCpu));
    }
  }, [workspace.data]);
  useEffect(() => {
    // A group picked: its first size and the form's GPU preset.
    if (selected) {
      setSize(selected.sizes[0]?.name ?? '');
      setGpus(selected.max_gpus ? String(Math.min(defaults.gpus, selected.max_gpus)) : '0');
    }
  }, [group, workspace.data !== undefined]);

  return { group, size, gpus, setGroup, setSize, setGpus, groups, selected, workspace, resources };
}

/**
 * The request's compute fields. A group without GPUs (or none known) asks
 * for 0 GPUs explicitly, so the server never adds its GPU-group default.
 * Throws a readable Error for a GPU count that is not a whole number >= 0.
 */
export function computeRequest(c: Pick<ICompute, 'group' | 'size' | 'gpus' | 'selected'>): {
  resource_group: string | null;
  size: string | null;
  gpus: number;
} {
  let gpus = 0;
  if (c.selected?.max_gpus) {
    gpus = Number(c.gpus);
    if (c.gpus.trim() === '' || !Number.isInteger(gpus) || gpus < 0) {
      throw new Error('GPUs: a whole number, 0 or more');
    }
  }
  return { resource_group: c.group || null, size: c.size || null, gpus };
}

/**
 * "Resource group", "Size" and (for a group with GPUs) "GPUs"; `children`
 * (e.g. the job form's "Workers") share the row with "GPUs".
 */
export function ComputeFields(props: { compute: ICompute; children?: React.ReactNode }): JSX.Element {
  const { group, size, gpus, setGroup, setSize, setGpus, groups, selected, workspace, resources } = props.compute;
  const uses = useMemo(() => {
    const m = new Map<string, GroupUse>();
    resources.data?.groups.forEach(g => m.set(g.name, g));
    return m;
  }, [resources.data]);
  return (
    <>
      <Field label="Resource group">
        {id => (
          <HTMLSelect
            id={id}
            value={group}
            onChange={e => setGroup(e.currentTarget.value)}
            options={
              groups.length
                ? groups.map(g => ({ value: g.name, label: groupLabel(g, uses.get(g.name)) }))
                : [{ value: '', label: workspace.loading ? 'Loading…' : 'No resource group' }]
            }
          />
        )}
      </Field>
      <Field label="Size">
        {id => (
          <HTMLSelect
            id={id}
            value={size}
            onChange={e => setSize(e.currentTarget.value)}
            options={(selected?.sizes ?? []).map(s => ({
              value: s.name,
              label: s.display_name || `${s.name} (${s.cpu} CPU, ${s.memory})`
            }))}
          />
        )}
      </Field>
      {(selected?.max_gpus || props.children) && (
        <div className="kl-field-row">
          {!!selected?.max_gpus && (
            <Field label="GPUs">
              {id => (
                <input
                  id={id}
                  className="jp-mod-styled kl-number"
                  type="number"
                  min={0}
                  max={selected.max_gpus}
                  value={gpus}
                  onChange={e => setGpus(e.currentTarget.value)}
                />
              )}
            </Field>
          )}
          {props.children}
        </div>
      )}
      <ErrorBox error={workspace.error} />
    </>
  );
}
