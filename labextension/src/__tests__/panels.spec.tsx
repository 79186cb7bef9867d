/**
 * The panels rendered in jsdom with a stand-in client: what a user sees for
 * given API answers (lists with statuses, the cron preview, errors, quota bars).
 */
import { act, fireEvent, render, screen, waitFor, within } from '@testing-library/react';
import React from 'react';
import { Job, kubelabApi, KubelabApi, ResourceGroup, Resources, Run, Schedule, Workspace } from '../api';
import { DatasetsPanel } from '../components/DatasetsPanel';
import { JobsPanel } from '../components/JobsPanel';
import { ResourcesView } from '../components/ResourcesPanel';
import { ScheduleForm, SchedulesPanel } from '../components/SchedulesPanel';
import { ApiContext, HostContext, IHost, nullHost } from '../context';
import { ApiError } from '../handler';
import { FormRequests } from '../requests';
import { fakeServer } from './fetch';

function fakeApi(overrides: Partial<KubelabApi>): KubelabApi {
  const unexpected = (name: string) => () => Promise.reject(new Error(`unexpected call: ${name}`));
  const api = {} as Record<string, unknown>;
  for (const name of Object.keys(kubelabApi)) {
    api[name] = (overrides as Record<string, unknown>)[name] ?? unexpected(name);
  }
  return api as unknown as KubelabApi;
}

function mount(ui: React.ReactElement, api: KubelabApi, host: IHost = nullHost) {
  return render(
    <ApiContext.Provider value={api}>
      <HostContext.Provider value={host}>{ui}</HostContext.Provider>
    </ApiContext.Provider>
  );
}

const status = {
  started: '2025-01-31T06:00:00Z',
  finished: null,
  duration_seconds: null,
  reason: null,
  message: null,
  active: 0,
  succeeded: 0,
  failed: 0,
  pods: []
};

function schedule(name: string, extra: Partial<Schedule> = {}): Schedule {
  return {
    name,
    notebook: `${name}.ipynb`,
    schedule: '0 6 * * *',
    timezone: 'UTC',
    suspend: false,
    concurrency_policy: 'Forbid',
    timeout_seconds: 3600,
    retries: 0,
    created: null,
    last_schedule: null,
    last_success: null,
    active_runs: [],
    next_runs: ['2030-01-01T06:00:00Z'],
    snapshot: null,
    ...extra
  };
}

function run(id: string, s: Run['status'], extra: Partial<Run> = {}): Run {
  return {
    ...status,
    id,
    schedule: 'daily',
    trigger: 'manual',
    created: null,
    output_notebook: null,
    output_html: null,
    error: null,
    status: s,
    ...extra
  };
}

function job(name: string, s: Job['status'], extra: Partial<Job> = {}): Job {
  return { ...status, name, kind: 'Job', created: null, model_artifact: null, status: s, workers: 1, ...extra };
}

function group(name: string, maxGpus: number, sizes: string[]): ResourceGroup {
  return {
    name,
    display_name: maxGpus ? 'GPU A100' : 'CPU',
    description: '',
    node_selector: {},
    tolerations: [],
    gpu_resource: maxGpus ? 'nvidia.com/gpu' : '',
    gpu_type: maxGpus ? 'A100' : '',
    max_gpus: maxGpus,
    sizes: sizes.map(n => ({ name: n, display_name: '', cpu: '2', memory: '4Gi' })),
    allowed_groups: [],
    requires_approval: false,
    idle_timeout: 0
  };
}

/** A user whose default group has GPUs (a server spawned there), and a CPU group listed after it. */
const workspaceData: Workspace = {
  user: 'alice',
  namespace: 'kubelab-alice',
  image: 'kubelab/notebook',
  home: '/home/jovyan',
  default_resource_group: 'gpu-a100',
  resource_groups: [group('gpu-a100', 4, ['gpu-small', 'gpu-large']), group('cpu', 0, ['small', 'medium'])]
};

const resourcesData: Resources = {
  namespace: 'kubelab-alice',
  gpus_in_use: 2,
  quota: [],
  groups: [
    {
      name: 'gpu-a100',
      display_name: 'GPU A100',
      gpu_resource: 'nvidia.com/gpu',
      max_gpus: 4,
      free_gpus: 2,
      gpu_quota_headroom: 3
    },
    { name: 'cpu', display_name: 'CPU', gpu_resource: null, max_gpus: 0, free_gpus: null, gpu_quota_headroom: null }
  ]
};

/** What the compute fields (Resource group, Size, GPUs) read. */
const compute = {
  workspace: () => Promise.resolve(workspaceData),
  resources: () => Promise.resolve(resourcesData)
};

function rowOf(name: string): HTMLElement {
  const row = document.querySelector(`[data-testid="kubelab-row"][data-name="${name}"]`);
  if (!row) {
    throw new Error(`no row ${name}`);
  }
  return row as HTMLElement;
}

describe('Schedules panel', () => {
  it('lists schedules, expands one into its runs with their statuses, and reads a log', async () => {
    const runLogs = jest.fn(() => Promise.resolve('hello from the run\n'));
    const api = fakeApi({
      listSchedules: () =>
        Promise.resolve({ schedules: [schedule('daily'), schedule('weekly', { suspend: true, next_runs: [] })] }),
      listRuns: () =>
        Promise.resolve({
          runs: [
            run('daily-2', 'Failed', { error: { cell: 3, ename: 'ValueError', evalue: 'bad input' } }),
            run('daily-1', 'Succeeded', { duration_seconds: 65, output_html: '.kubelab/runs/daily/1/out.html' })
          ]
        }),
      runLogs
    });
    const host = { ...nullHost, openFile: jest.fn() };
    mount(<SchedulesPanel active />, api, host);
    await waitFor(() => expect(rowOf('weekly')).toBeTruthy());
    expect(rowOf('weekly').dataset.suspended).toBe('true');
    expect(within(rowOf('weekly')).getByRole('button', { name: 'Resume' })).toBeTruthy();
    expect(within(rowOf('daily')).getByRole('button', { name: 'Suspend' })).toBeTruthy();
    expect(within(rowOf('daily')).getByText(/next: /).textContent).not.toContain('suspended');

    fireEvent.click(within(rowOf('daily')).getByRole('button', { name: /daily/ }));
    await waitFor(() => expect(document.querySelectorAll('[data-testid="kubelab-run"]')).toHaveLength(2));
    const runs = Array.from(document.querySelectorAll<HTMLElement>('[data-testid="kubelab-run"]'));
    expect(runs.map(r => [r.dataset.name, r.dataset.status])).toEqual([
      ['daily-2', 'Failed'],
      ['daily-1', 'Succeeded']
    ]);
    expect(runs[0].textContent).toContain('ValueError: bad input (cell 3)');
    expect(runs[1].textContent).toContain('1m 5s');

    fireEvent.click(within(runs[1]).getByRole('button', { name: 'Open output' }));
    expect(host.openFile).toHaveBeenCalledWith('.kubelab/runs/daily/1/out.html');

    fireEvent.click(within(runs[1]).getByRole('button', { name: 'Logs' }));
    await waitFor(() => expect(screen.getByTestId('kubelab-logs').textContent).toBe('hello from the run\n'));
    expect(runLogs).toHaveBeenCalledWith('daily', 'daily-1');
  });

  it('opens the form prefilled when a notebook is scheduled from a command', async () => {
    const requests = new FormRequests<{ notebook: string }>();
    requests.request({ notebook: 'reports/Daily Sales.ipynb' });
    const api = fakeApi({
      ...compute,
      listSchedules: () => Promise.resolve({ schedules: [] }),
      cron: () => Promise.resolve({ schedule: '0 6 * * *', timezone: 'UTC', next_runs: [], next_runs_local: [] })
    });
    mount(<SchedulesPanel active requests={requests} />, api);
    expect((screen.getByLabelText('Notebook') as HTMLInputElement).value).toBe('reports/Daily Sales.ipynb');
    expect((screen.getByLabelText('Name') as HTMLInputElement).value).toBe('daily-sales');
    expect(screen.queryByRole('button', { name: 'New schedule' })).toBeNull();
    await screen.findByText(/No schedules/);
  });
});

describe('the cron field', () => {
  it('previews the next runs of what is typed, in the chosen time zone', async () => {
    const cron = jest.fn((schedule: string, timezone?: string) =>
      Promise.resolve({
        schedule,
        timezone: timezone ?? 'UTC',
        next_runs: ['2030-01-07T05:30:00Z', '2030-01-08T05:30:00Z', '2030-01-09T05:30:00Z'],
        next_runs_local: ['2030-01-07T06:30:00+01:00', '2030-01-08T06:30:00+01:00', '2030-01-09T06:30:00+01:00']
      })
    );
    mount(<ScheduleForm onCreated={() => undefined} onClose={() => undefined} />, fakeApi({ ...compute, cron }));
    fireEvent.change(screen.getByLabelText('Time zone'), { target: { value: 'Europe/Berlin' } });
    fireEvent.change(screen.getByLabelText('Schedule'), { target: { value: '30 6 * * 1-5' } });
    const preview = await screen.findByTestId('kubelab-cron-preview');
    await waitFor(() => expect(cron).toHaveBeenLastCalledWith('30 6 * * 1-5', 'Europe/Berlin', 3));
    expect(Array.from(preview.querySelectorAll('li')).map(li => li.textContent)).toEqual([
      '2030-01-07 06:30:00+01:00',
      '2030-01-08 06:30:00+01:00',
      '2030-01-09 06:30:00+01:00'
    ]);
    // A preset fills the cron field.
    fireEvent.change(screen.getByLabelText('Repeat'), { target: { value: 'hourly' } });
    expect((screen.getByLabelText('Schedule') as HTMLInputElement).value).toBe('0 * * * *');
    await waitFor(() => expect(cron).toHaveBeenLastCalledWith('0 * * * *', 'Europe/Berlin', 3));
  });

  it("shows the server's message for an invalid expression", async () => {
    const cron = jest.fn(() => Promise.reject(new ApiError(400, 'schedule: expected 5 fields, got 2')));
    mount(<ScheduleForm onCreated={() => undefined} onClose={() => undefined} />, fakeApi({ ...compute, cron }));
    fireEvent.change(screen.getByLabelText('Schedule'), { target: { value: '* *' } });
    const alert = await screen.findByRole('alert');
    expect(alert.textContent).toContain('schedule: expected 5 fields, got 2');
    expect(screen.queryByTestId('kubelab-cron-preview')).toBeNull();
  });

  it('creates the schedule from the form, parameters parsed, on the CPU group with 0 GPUs', async () => {
    const createSchedule = jest.fn((body: unknown) => Promise.resolve(schedule('nightly', body as Schedule)));
    const onCreated = jest.fn();
    const cron = () => Promise.resolve({ schedule: '', timezone: 'UTC', next_runs: [], next_runs_local: [] });
    mount(
      <ScheduleForm notebook="etl.ipynb" onCreated={onCreated} onClose={() => undefined} />,
      fakeApi({ ...compute, cron, createSchedule })
    );
    // The workspace default has GPUs, but a report rarely needs one: the CPU group is preselected.
    const groupSelect = screen.getByLabelText('Resource group') as HTMLSelectElement;
    await waitFor(() => expect(groupSelect.value).toBe('cpu'));
    await waitFor(() =>
      expect(Array.from(groupSelect.options).map(o => o.textContent)).toEqual([
        'GPU A100: 2 GPUs free, quota allows 3 more',
        'CPU: no GPUs'
      ])
    );
    expect((screen.getByLabelText('Size') as HTMLSelectElement).value).toBe('small');
    expect(screen.queryByLabelText('GPUs')).toBeNull();
    fireEvent.change(screen.getByLabelText('Name'), { target: { value: 'nightly' } });
    fireEvent.change(screen.getByLabelText('Time zone'), { target: { value: 'UTC' } });
    fireEvent.change(screen.getByLabelText('Parameters'), { target: { value: 'alpha=0.5\nday="mon"' } });
    fireEvent.submit(screen.getByLabelText('Name').closest('form')!);
    await waitFor(() => expect(onCreated).toHaveBeenCalled());
    expect(createSchedule).toHaveBeenCalledWith({
      name: 'nightly',
      notebook: 'etl.ipynb',
      schedule: '0 6 * * *',
      timezone: 'UTC',
      resource_group: 'cpu',
      size: 'small',
      gpus: 0,
      parameters: { alpha: 0.5, day: 'mon' }
    });
  });

  it('asks for GPUs only when a GPU group and a GPU count are chosen', async () => {
    const createSchedule = jest.fn((body: unknown) => Promise.resolve(schedule('train-nightly', body as Schedule)));
    const onCreated = jest.fn();
    const cron = () => Promise.resolve({ schedule: '', timezone: 'UTC', next_runs: [], next_runs_local: [] });
    mount(
      <ScheduleForm notebook="train.ipynb" onCreated={onCreated} onClose={() => undefined} />,
      fakeApi({ ...compute, cron, createSchedule })
    );
    const groupSelect = screen.getByLabelText('Resource group') as HTMLSelectElement;
    await waitFor(() => expect(groupSelect.value).toBe('cpu'));
    fireEvent.change(groupSelect, { target: { value: 'gpu-a100' } });
    // The GPU group's field appears at 0: a schedule does not take a GPU unless asked to.
    const gpus = (await screen.findByLabelText('GPUs')) as HTMLInputElement;
    expect(gpus.value).toBe('0');
    expect(gpus.max).toBe('4');
    expect((screen.getByLabelText('Size') as HTMLSelectElement).value).toBe('gpu-small');
    fireEvent.change(screen.getByLabelText('Size'), { target: { value: 'gpu-large' } });
    fireEvent.change(gpus, { target: { value: '1' } });
    fireEvent.submit(screen.getByLabelText('Name').closest('form')!);
    await waitFor(() => expect(onCreated).toHaveBeenCalled());
    expect(createSchedule).toHaveBeenCalledWith(
      expect.objectContaining({ name: 'train', resource_group: 'gpu-a100', size: 'gpu-large', gpus: 1 })
    );
  });
});

describe('errors from the server', () => {
  it('show the {code, message} answer in an alert, through the real client', async () => {
    const sent = fakeServer(s =>
      s.method === 'POST'
        ? { status: 409, body: { code: 409, message: "a schedule named 'daily' already exists" } }
        : s.url.pathname.endsWith('/cron')
          ? { status: 200, body: { schedule: '0 6 * * *', timezone: 'UTC', next_runs: [], next_runs_local: [] } }
          : s.url.pathname.endsWith('/workspace')
            ? { status: 200, body: workspaceData }
            : s.url.pathname.endsWith('/resources')
              ? { status: 200, body: resourcesData }
              : { status: 200, body: { schedules: [] } }
    );
    mount(<SchedulesPanel active />, kubelabApi);
    fireEvent.click(screen.getByRole('button', { name: 'New schedule' }));
    fireEvent.change(screen.getByLabelText('Name'), { target: { value: 'daily' } });
    fireEvent.change(screen.getByLabelText('Notebook'), { target: { value: 'a.ipynb' } });
    await waitFor(() => expect((screen.getByLabelText('Resource group') as HTMLSelectElement).value).toBe('cpu'));
    fireEvent.click(screen.getByRole('button', { name: 'Create' }));
    const alert = await screen.findByRole('alert');
    expect(alert.textContent).toContain("a schedule named 'daily' already exists");
    // What went over the wire: the compute fields, so no run silently asks for a GPU.
    const post = sent.find(r => r.method === 'POST')!;
    expect(post.url.pathname).toBe('/user/alice/kubelab/api/schedules');
    expect(post.body).toMatchObject({ name: 'daily', notebook: 'a.ipynb', resource_group: 'cpu', size: 'small', gpus: 0 });
    // The form stays open with what was typed.
    expect((screen.getByLabelText('Name') as HTMLInputElement).value).toBe('daily');
  });

  it('show a list that cannot be read, and the list again once it can', async () => {
    let fail = true;
    const listJobs = jest.fn(() =>
      fail ? Promise.reject(new ApiError(503, 'the cluster cannot be used from this server')) : Promise.resolve({ jobs: [] })
    );
    mount(<JobsPanel active />, fakeApi({ listJobs }));
    expect((await screen.findByRole('alert')).textContent).toContain('the cluster cannot be used from this server');
    fail = false;
    await act(async () => {
      fireEvent.click(screen.getByRole('button', { name: 'Refresh' }));
    });
    await waitFor(() => expect(screen.queryByRole('alert')).toBeNull());
    expect(screen.getByText(/No jobs/)).toBeTruthy();
  });
});

describe('Jobs panel', () => {
  it('lists jobs with their statuses and explains a pending one', async () => {
    const api = fakeApi({
      listJobs: () =>
        Promise.resolve({
          jobs: [job('big', 'Pending', { gpus: 8, reason: 'Unschedulable' }), job('small', 'Succeeded')]
        }),
      getJob: name => Promise.resolve({ ...job(name, 'Pending'), events: [] }),
      jobPending: name =>
        Promise.resolve({
          name,
          status: 'Pending',
          pending: true,
          reasons: ['worker 0: Unschedulable: 0/1 nodes are available: 1 Insufficient nvidia.com/gpu.']
        })
    });
    mount(<JobsPanel active />, api);
    await waitFor(() => expect(rowOf('small').dataset.status).toBe('Succeeded'));
    expect(rowOf('big').dataset.status).toBe('Pending');
    expect(within(rowOf('big')).getByRole('button', { name: 'Cancel job' })).toBeTruthy();
    expect(within(rowOf('small')).queryByRole('button', { name: 'Cancel job' })).toBeNull();
    fireEvent.click(within(rowOf('big')).getByRole('button', { name: /big/ }));
    const reason = await screen.findByTestId('kubelab-pending-reason');
    await waitFor(() => expect(reason.textContent).toContain('Insufficient nvidia.com/gpu'));
  });

  it('submits a job on the default group with one GPU, and with none on a CPU group', async () => {
    const submitJob = jest.fn((body: unknown) => Promise.resolve(job((body as Job).name, 'Pending')));
    const api = fakeApi({
      ...compute,
      listJobs: () => Promise.resolve({ jobs: [] }),
      submitJob,
      getJob: name => Promise.resolve({ ...job(name, 'Pending'), events: [] }),
      jobPending: name => Promise.resolve({ name, status: 'Pending', pending: true, reasons: [] })
    });
    mount(<JobsPanel active />, api);
    fireEvent.click(screen.getByRole('button', { name: 'Submit job' }));
    const groupSelect = screen.getByLabelText('Resource group') as HTMLSelectElement;
    await waitFor(() => expect(groupSelect.value).toBe('gpu-a100'));
    expect(((await screen.findByLabelText('GPUs')) as HTMLInputElement).value).toBe('1');
    expect((screen.getByLabelText('Workers') as HTMLInputElement).value).toBe('1');
    fireEvent.change(screen.getByLabelText('Name'), { target: { value: 'train' } });
    fireEvent.change(screen.getByLabelText('Source'), { target: { value: 'train.py' } });
    fireEvent.click(screen.getByRole('button', { name: 'Submit' }));
    await waitFor(() => expect(submitJob).toHaveBeenCalledTimes(1));
    expect(submitJob).toHaveBeenLastCalledWith(
      expect.objectContaining({ name: 'train', resource_group: 'gpu-a100', size: 'gpu-small', gpus: 1, workers: 1 })
    );

    // Submitted: the form closes; open a new one.
    fireEvent.click(await screen.findByRole('button', { name: 'Submit job' }));
    const again = screen.getByLabelText('Resource group') as HTMLSelectElement;
    await waitFor(() => expect(again.value).toBe('gpu-a100'));
    fireEvent.change(again, { target: { value: 'cpu' } });
    await waitFor(() => expect(screen.queryByLabelText('GPUs')).toBeNull());
    expect(screen.getByLabelText('Workers')).toBeTruthy();
    fireEvent.change(screen.getByLabelText('Name'), { target: { value: 'prep' } });
    fireEvent.change(screen.getByLabelText('Source'), { target: { value: 'prep.py' } });
    fireEvent.click(screen.getByRole('button', { name: 'Submit' }));
    await waitFor(() => expect(submitJob).toHaveBeenCalledTimes(2));
    expect(submitJob).toHaveBeenLastCalledWith(
      expect.objectContaining({ name: 'prep', resource_group: 'cpu', size: 'small', gpus: 0 })
    );
  });

  it("reads a worker's log from the row", async () => {
    const jobLogs = jest.fn(() => Promise.resolve('epoch 1 loss 0.5\n'));
    const api = fakeApi({
      listJobs: () => Promise.resolve({ jobs: [job('train', 'Succeeded')] }),
      getJob: name => Promise.resolve({ ...job(name, 'Succeeded'), events: [] }),
      jobPending: () => Promise.reject(new Error('not pending')),
      jobLogs
    });
    mount(<JobsPanel active />, api);
    await waitFor(() => rowOf('train'));
    fireEvent.click(within(rowOf('train')).getByRole('button', { name: 'Logs' }));
    await waitFor(() => expect(screen.getByTestId('kubelab-logs').textContent).toContain('epoch 1 loss 0.5'));
    expect(jobLogs).toHaveBeenCalledWith('train', 0);
  });
});

describe('quota bars', () => {
  const data: Resources = {
    namespace: 'kubelab-alice',
    gpus_in_use: 1,
    quota: [
      { resource: 'requests.cpu', used: '500m', hard: '4', used_value: 0.5, hard_value: 4 },
      { resource: 'requests.memory', used: '7Gi', hard: '8Gi', used_value: 7 * 2 ** 30, hard_value: 8 * 2 ** 30 },
      { resource: 'count/jobs.batch', used: '0', hard: '0', used_value: 0, hard_value: 0 }
    ],
    groups: [
      {
        name: 'gpu',
        display_name: 'GPU A100',
        gpu_resource: 'nvidia.com/gpu',
        max_gpus: 4,
        free_gpus: 2,
        gpu_quota_headroom: 3
      },
      { name: 'cpu', display_name: 'CPU', gpu_resource: null, max_gpus: 0, free_gpus: null, gpu_quota_headroom: null }
    ]
  };

  it('draws one bar per resource, used of hard, for screen readers too', () => {
    mount(<ResourcesView data={data} />, fakeApi({}));
    const bars = Array.from(document.querySelectorAll<HTMLElement>('[data-testid="kubelab-quota"]'));
    expect(bars.map(b => b.dataset.resource)).toEqual(['requests.cpu', 'requests.memory', 'count/jobs.batch']);
    const cpu = within(bars[0]).getByRole('progressbar');
    expect(cpu.getAttribute('aria-valuenow')).toBe('0.5');
    expect(cpu.getAttribute('aria-valuemax')).toBe('4');
    expect((cpu.firstChild as HTMLElement).style.width).toBe('12.5%');
    expect(bars[0].textContent).toContain('500m of 4');
    const mem = within(bars[1]).getByRole('progressbar');
    expect((mem.firstChild as HTMLElement).style.width).toBe('87.5%');
    expect(mem.className).toContain('kl-high');
    expect((within(bars[2]).getByRole('progressbar').firstChild as HTMLElement).style.width).toBe('0%');
    expect(screen.getByTestId('kubelab-gpus-in-use').textContent).toBe('1');
    const gpu = document.querySelector('[data-testid="kubelab-group"][data-name="gpu"]')!;
    expect(Array.from(gpu.querySelectorAll('td')).map(td => td.textContent)).toEqual(['2', '3']);
    expect(gpu.textContent).toContain('up to 4 per worker');
  });
});

describe('Datasets panel', () => {
  it('opens the folder typed in Prefix on Enter (the form has no submit button)', async () => {
    const listing = (prefix: string) => ({
      prefix,
      parent: '',
      folders: prefix === 'users/ann/' ? [{ prefix: 'users/ann/data/', name: 'data/' }] : [],
      objects: [],
      next_token: null,
      page_size: 100,
      s3_requests: prefix ? 1 : 0,
      writable: true,
      roots: prefix
        ? undefined
        : [{ prefix: 'users/ann/', name: 'users/ann/', path: '/home/jovyan', writable: true, description: 'home' }]
    });
    const asked: string[] = [];
    const api = fakeApi({
      browse: (prefix: string) => {
        asked.push(prefix);
        return Promise.resolve(listing(prefix));
      },
      workspace: () => Promise.resolve({ home: '/home/jovyan' } as unknown as Workspace)
    });
    mount(<DatasetsPanel active />, api);
    await waitFor(() => expect(rowOf('users/ann/')).toBeTruthy());
    const box = screen.getByLabelText('Prefix');
    fireEvent.change(box, { target: { value: 'users/ann/' } });
    fireEvent.keyDown(box, { key: 'Enter' });
    await waitFor(() => expect(rowOf('users/ann/data/')).toBeTruthy());
    expect(asked).toContain('users/ann/');
  });
});
