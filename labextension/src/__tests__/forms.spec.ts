import { dnsName } from '../components/common';
import { homePath, searchPrefix } from '../components/DatasetsPanel';
import { computeRequest, defaultGroup, groupLabel } from '../components/ComputeFields';
import { parseRequest, serviceState } from '../components/ServicesPanel';
import { CRON_PRESETS, jobSource, parseParameters, presetOf } from '../forms';

describe('parameters', () => {
  it('reads name=value lines, values as JSON where they parse', () => {
    expect(parseParameters('date="2025-01-31"\nalpha=0.5\n# note\n\nflag=true\nword=bonjour')).toEqual({
      date: '2025-01-31',
      alpha: 0.5,
      flag: true,
      word: 'bonjour'
    });
  });

  it('reads a JSON object', () => {
    expect(parseParameters('{"alpha": 0.5, "tags": ["a"]}')).toEqual({ alpha: 0.5, tags: ['a'] });
  });

  it('is null when empty', () => {
    expect(parseParameters('  \n ')).toBeNull();
  });

  it('says which line is wrong', () => {
    expect(() => parseParameters('alpha=1\nbeta')).toThrow('Parameters, line 2: write name=value');
    expect(() => parseParameters('1x=2')).toThrow('"1x" is not a Python name');
    expect(() => parseParameters('{"a": ')).toThrow('Parameters: not valid JSON');
    expect(() => parseParameters('[1]')).toThrow('write name=value');
  });
});

describe('cron presets', () => {
  it('recognises its presets and calls the rest custom', () => {
    for (const p of CRON_PRESETS.filter(x => x.cron)) {
      expect(presetOf(p.cron)).toBe(p.id);
    }
    expect(presetOf('*/5 * * * *')).toBe('custom');
  });
});

describe('job source', () => {
  it('is a notebook or a script by extension', () => {
    expect(jobSource('nb/train.ipynb')).toEqual({ notebook: 'nb/train.ipynb' });
    expect(jobSource(' train.py ')).toEqual({ script: 'train.py' });
    expect(() => jobSource('train.sh')).toThrow('Source: give a notebook (.ipynb) or a Python script (.py)');
  });
});

describe('names', () => {
  it('makes DNS-1123 labels from file names', () => {
    expect(dnsName('My Report_2024.ipynb')).toBe('my-report-2024');
    expect(dnsName('--x--.py')).toBe('x');
    expect(dnsName('a'.repeat(80) + '.ipynb')).toHaveLength(52);
  });
});

describe('datasets', () => {
  const roots = [
    { prefix: 'users/alice/', name: 'home', path: '/home/jovyan', writable: true, description: '' },
    { prefix: 'datasets/', name: 'datasets', path: '/home/jovyan/datasets', writable: false, description: '' }
  ];

  it('maps keys to file browser paths under the home', () => {
    expect(homePath('users/alice/ui/data/iris.csv', roots, '/home/jovyan')).toBe('ui/data/iris.csv');
    expect(homePath('datasets/sales/2024.csv', roots, '/home/jovyan/')).toBe('datasets/sales/2024.csv');
    expect(homePath('users/bob/x.csv', roots, '/home/jovyan')).toBeNull();
    expect(homePath('users/alice/x.csv', roots, undefined)).toBeNull();
    const elsewhere = [{ ...roots[1], path: '/mnt/datasets' }];
    expect(homePath('datasets/a.csv', elsewhere, '/home/jovyan')).toBeNull();
  });

  it('searches in the folder, or in the home from the top', () => {
    expect(searchPrefix('datasets/sales/', '2024', roots)).toBe('datasets/sales/2024');
    expect(searchPrefix('', 'ui/data', roots)).toBe('users/alice/ui/data');
    expect(searchPrefix('', 'datasets/sa', roots)).toBe('datasets/sa');
    expect(searchPrefix('', 'data', roots)).toBe('data');
    expect(searchPrefix('', '', roots)).toBe('');
  });
});

describe('resource group picker', () => {
  const group = {
    name: 'gpu-a100',
    display_name: 'GPU A100',
    description: '',
    node_selector: {},
    tolerations: [],
    gpu_resource: 'nvidia.com/gpu',
    gpu_type: 'A100',
    max_gpus: 4,
    sizes: [],
    allowed_groups: [],
    requires_approval: false,
    idle_timeout: 0
  };
  it('shows free GPUs and quota headroom', () => {
    const use = {
      name: 'gpu-a100',
      display_name: 'GPU A100',
      gpu_resource: 'nvidia.com/gpu',
      max_gpus: 4,
      free_gpus: 2,
      gpu_quota_headroom: 3
    };
    expect(groupLabel(group, use)).toBe('GPU A100: 2 GPUs free, quota allows 3 more');
    expect(groupLabel(group, { ...use, free_gpus: null, gpu_quota_headroom: null })).toBe(
      'GPU A100: free GPUs unknown'
    );
    expect(groupLabel({ ...group, max_gpus: 0, display_name: 'CPU' })).toBe('CPU: no GPUs');
  });

  const cpu = { ...group, name: 'cpu', display_name: 'CPU', gpu_resource: '', gpu_type: '', max_gpus: 0 };
  const workspace = (groups: (typeof group)[], dflt: string | null) => ({
    user: 'alice',
    namespace: 'kubelab-alice',
    image: 'kubelab/notebook',
    home: '/home/jovyan',
    default_resource_group: dflt,
    resource_groups: groups
  });
  it('starts schedules on the first group without GPUs, jobs on the default group', () => {
    expect(defaultGroup(workspace([group, cpu], 'gpu-a100'), true)).toBe('cpu');
    expect(defaultGroup(workspace([group, cpu], 'gpu-a100'))).toBe('gpu-a100');
    // every group has GPUs: the default group; no default: the first group
    expect(defaultGroup(workspace([{ ...group, name: 'gpu-h100' }, group], 'gpu-a100'), true)).toBe('gpu-a100');
    expect(defaultGroup(workspace([group], null), true)).toBe('gpu-a100');
    expect(defaultGroup(workspace([], null), true)).toBe('');
  });

  it('asks for 0 GPUs outside a GPU group and checks the count inside one', () => {
    expect(computeRequest({ group: 'cpu', size: 'small', gpus: '3', selected: cpu })).toEqual({
      resource_group: 'cpu',
      size: 'small',
      gpus: 0
    });
    expect(computeRequest({ group: '', size: '', gpus: '0', selected: undefined })).toEqual({
      resource_group: null,
      size: null,
      gpus: 0
    });
    expect(computeRequest({ group: 'gpu-a100', size: 'large', gpus: '2', selected: group }).gpus).toBe(2);
    for (const bad of ['-1', '1.5', '', 'two']) {
      expect(() => computeRequest({ group: 'gpu-a100', size: '', gpus: bad, selected: group })).toThrow(
        'GPUs: a whole number, 0 or more'
      );
    }
  });
});

describe('predict request', () => {
  it('must be a JSON object', () => {
    expect(parseRequest('{"data": [[1]]}')).toEqual({ data: [[1]] });
    expect(() => parseRequest('[1]')).toThrow('Request: a JSON object');
    expect(() => parseRequest('{')).toThrow('Request: not valid JSON');
  });
});

describe('service state', () => {
  const base = { name: 'iris', kind: 'Deployment' as const, model: 'iris', version: 1, url: 'http://iris/v2' };
  it("is the server's where given, else from the replicas", () => {
    expect(serviceState({ ...base, state: 'Failing', replicas: 1, ready_replicas: 1 })).toBe('Failing');
    expect(serviceState({ ...base, replicas: 2, ready_replicas: 2 })).toBe('Ready');
    expect(serviceState({ ...base, replicas: 2, ready_replicas: 1 })).toBe('Updating');
    expect(serviceState({ ...base, replicas: 1, ready_replicas: 0 })).toBe('NotReady');
    expect(serviceState({ ...base, replicas: 0, ready_replicas: 0 })).toBe('Stopped');
  });
});
