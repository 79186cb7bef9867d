/**
 * The client against the spec: every function of kubelabApi sends a method
 * and path that server_extension/openapi.yaml defines, with only query
 * parameters the spec names; errors come back as the server's message.
 */
import * as fs from 'fs';
import * as yaml from 'js-yaml';
import * as path from 'path';
import { kubelabApi, KubelabApi, routeUrl } from '../api';
import { ApiError, requestAPI } from '../handler';
import { fakeServer } from './fetch';

type Spec = {
  paths: Record<string, Record<string, { parameters?: Array<{ $ref?: string; name?: string; in?: string }> }>>;
  components: { parameters: Record<string, { name: string; in: string }> };
};

const spec = yaml.load(
  fs.readFileSync(path.join(__dirname, '..', '..', '..', 'server_extension', 'openapi.yaml'), 'utf8')
) as Spec;

/** Sample arguments for every client function: a new function without one fails the test below. */
const samples: { [K in keyof KubelabApi]: Parameters<KubelabApi[K]> } = {
  workspace: [],
  resources: [],
  cron: ['0 6 * * 1-5', 'Europe/Berlin', 3],
  listSchedules: [],
  createSchedule: [{ name: 'daily', notebook: 'a.ipynb', schedule: '@daily' }],
  updateSchedule: ['daily', { suspend: true }],
  deleteSchedule: ['daily'],
  listRuns: ['daily'],
  runNow: ['daily'],
  runLogs: ['daily', 'daily-29000000'],
  listJobs: [],
  submitJob: [{ name: 'train', script: 'train.py', workers: 2 }],
  getJob: ['train'],
  cancelJob: ['train'],
  deleteJob: ['train'],
  jobLogs: ['train', 1],
  jobPending: ['train'],
  serviceLogs: ['iris'],
  listModels: [],
  registerModel: [{ name: 'iris', path: 'models/iris.onnx' }],
  setAlias: ['iris', 'production', 2],
  listServices: [],
  deploy: [{ name: 'iris', model: 'iris', version: 'latest' }],
  updateService: ['iris', { version: 3 }],
  getService: ['iris'],
  rollback: ['iris'],
  deleteService: ['iris'],
  predict: ['iris', { data: [[1, 2, 3, 4]] }],
  browse: ['datasets/sales/', 'tok', 50, true],
  preview: ['datasets/sales/2024.csv', 5],
  snippet: ['datasets/sales/2024.csv'],
  registerDataset: [{ name: 'sales', uri: 'datasets/sales/2024.csv' }]
};

/** The spec route a request path matches (templates as regular expressions). */
function matchRoute(pathname: string): string | undefined {
  return Object.keys(spec.paths).find(template => {
    const re = new RegExp('^' + template.replace(/\{[^}]+\}/g, '[^/]+') + '$');
    return re.test(pathname);
  });
}

function queryParams(route: string, method: string): string[] {
  const item = spec.paths[route] as Record<string, any>;
  const all = [...(item.parameters ?? []), ...(item[method]?.parameters ?? [])];
  return all
    .map((p: { $ref?: string; name?: string; in?: string }) =>
      p.$ref ? spec.components.parameters[p.$ref.split('/').pop()!] : p
    )
    .filter((p: { in?: string }) => p.in === 'query')
    .map((p: { name?: string }) => p.name!);
}

describe('the client against openapi.yaml', () => {
  it('has sample arguments for every function', () => {
    expect(Object.keys(samples).sort()).toEqual(Object.keys(kubelabApi).sort());
  });

  for (const name of Object.keys(samples) as Array<keyof KubelabApi>) {
    it(`${name} sends a route and method the spec defines`, async () => {
      const sent = fakeServer(s =>
        s.url.pathname.endsWith('/logs') ? { status: 200, text: 'a log line\n' } : { status: 200, body: {} }
      );
      await (kubelabApi[name] as (...a: unknown[]) => Promise<unknown>)(...(samples[name] as unknown[]));
      expect(sent).toHaveLength(1);
      const { method, url } = sent[0];
      expect(url.pathname.startsWith('/user/alice/kubelab/api/')).toBe(true);
      const pathname = url.pathname.slice('/user/alice/kubelab/api'.length);
      const route = matchRoute(pathname);
      expect({ name, pathname, route }).toEqual({ name, pathname, route: expect.any(String) });
      const m = method.toLowerCase();
      expect(Object.keys(spec.paths[route!])).toContain(m);
      const allowed = queryParams(route!, m);
      for (const key of url.searchParams.keys()) {
        if (/^\d+$/.test(key) && !url.searchParams.get(key)) {
          continue; // ServerConnection's cache-busting timestamp
        }
        expect({ name, key, allowed }).toEqual({ name, key, allowed: expect.arrayContaining([key]) });
      }
    });
  }

  it('fills path parameters escaped and drops empty query values', () => {
    expect(routeUrl('/schedules/{name}/runs/{run}/logs', { name: 'a b', run: 'r/1' }, { tail: 10, x: '' })).toBe(
      'schedules/a%20b/runs/r%2F1/logs?tail=10'
    );
    expect(() => routeUrl('/jobs/{name}', {})).toThrow('missing path parameter name');
  });

  it('sends the JSON body the spec describes', async () => {
    const sent = fakeServer(() => ({ status: 201, body: { name: 'daily' } }));
    await kubelabApi.updateSchedule('daily', { suspend: false });
    expect(sent[0].method).toBe('PATCH');
    expect(sent[0].body).toEqual({ suspend: false });
  });
});

describe('errors', () => {
  it("carry the server's one-line message and status", async () => {
    fakeServer(() => ({ status: 409, body: { code: 409, message: "schedule 'daily' already exists" } }));
    const error = await kubelabApi
      .createSchedule({ name: 'daily', notebook: 'a.ipynb', schedule: '@daily' })
      .catch((e: ApiError) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect(error.status).toBe(409);
    expect(error.message).toBe("schedule 'daily' already exists");
  });

  it('fall back to the status when the answer is not JSON', async () => {
    fakeServer(() => ({ status: 502, text: '<html>Bad Gateway</html>' }));
    const error = (await requestAPI('schedules').catch((e: ApiError) => e)) as ApiError;
    expect(error).toBeInstanceOf(ApiError);
    expect(error.status).toBe(502);
    expect(error.message).toContain('Bad Gateway');
  });

  it('turn an empty 204 into undefined', async () => {
    fakeServer(() => ({ status: 204 }));
    await expect(kubelabApi.deleteJob('train')).resolves.toBeUndefined();
  });
});
