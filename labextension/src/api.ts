/**
 * The typed kubelab client: every function is one route of
 * server_extension/openapi.yaml, typed by the `paths` that openapi-typescript
 * generates from it (src/schema.d.ts, at build time). A route or method that
 * is not in the spec does not compile; src/__tests__/api.spec.ts checks the
 * requests each function sends against the YAML itself.
 */
import type { components, paths } from './schema';
import { requestAPI } from './handler';

export type Schemas = components['schemas'];
export type Schedule = Schemas['Schedule'];
export type ScheduleCreate = Schemas['ScheduleCreate'];
export type ScheduleUpdate = Schemas['ScheduleUpdate'];
export type Run = Schemas['Run'];
export type Job = Schemas['Job'];
export type JobSubmit = Schemas['JobSubmit'];
export type Model = Schemas['Model'];
export type ModelVersion = Schemas['ModelVersion'];
export type ModelRegister = Schemas['ModelRegister'];
export type InferenceService = Schemas['InferenceService'];
export type InferenceServiceCreate = Schemas['InferenceServiceCreate'];
export type DatasetListing = Schemas['DatasetListing'];
export type DatasetPreview = Schemas['DatasetPreview'];
export type DatasetSnippet = Schemas['DatasetSnippet'];
export type DatasetRegister = Schemas['DatasetRegister'];
export type RegisteredDataset = Schemas['RegisteredDataset'];
export type Resources = Schemas['Resources'];
export type Workspace = Schemas['Workspace'];
export type ResourceGroup = Schemas['ResourceGroup'];
export type CronPreview = Schemas['CronPreview'];
export type KubeEvent = Schemas['Event'];
export type PendingReasons = Schemas['PendingReasons'];

export type Method = 'get' | 'post' | 'put' | 'patch' | 'delete';
export type Path = keyof paths;
/** The methods the spec defines for a path. */
export type MethodOf<P extends Path> = {
  [M in Method]-?: undefined extends paths[P][M] ? never : M;
}[Method];
type Op<P extends Path, M extends MethodOf<P>> = NonNullable<paths[P][M]>;
type JsonOf<R> = R extends { content: { 'application/json': infer J } } ? J : void;
/** The JSON of an operation's success answer (200, else 201; void for 204). */
export type Ok<O> = O extends { responses: infer R }
  ? R extends { 200: infer A }
    ? JsonOf<A>
    : R extends { 201: infer B }
      ? JsonOf<B>
      : void
  : never;
type BodyOf<O> = O extends { requestBody?: { content: { 'application/json': infer B } } } ? B : never;
type QueryOf<O> = O extends { parameters: { query?: infer Q } } ? Q : never;
type PathParamsOf<O> = O extends { parameters: { path: infer PP } } ? PP : never;

export interface ICallOptions<O> {
  params?: PathParamsOf<O>;
  query?: QueryOf<O>;
  body?: BodyOf<O>;
}

/** A spec path with its `{name}` parameters filled in, plus the query string. */
export function routeUrl(
  path: string,
  params: Record<string, unknown> = {},
  query: Record<string, unknown> = {}
): string {
  const filled = path.replace(/\{([^}]+)\}/g, (_, key: string) => {
    const value = params[key];
    if (value === undefined || value === null || value === '') {
      throw new Error(`missing path parameter ${key} for ${path}`);
    }
    return encodeURIComponent(String(value));
  });
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== '') {
      search.set(key, String(value));
    }
  }
  const qs = search.toString();
  return filled.replace(/^\//, '') + (qs ? `?${qs}` : '');
}

/** One JSON call of a route in the spec. */
export function call<P extends Path, M extends MethodOf<P>>(
  method: M,
  path: P,
  options: ICallOptions<Op<P, M>> = {}
): Promise<Ok<Op<P, M>>> {
  const url = routeUrl(
    path as string,
    (options.params ?? {}) as Record<string, unknown>,
    (options.query ?? {}) as Record<string, unknown>
  );
  const init: RequestInit = { method: (method as string).toUpperCase() };
  if (options.body !== undefined) {
    init.body = JSON.stringify(options.body);
  }
  return requestAPI<Ok<Op<P, M>>>(url, init);
}

/** One plain-text call (logs). */
export function callText<P extends Path, M extends MethodOf<P>>(
  method: M,
  path: P,
  options: ICallOptions<Op<P, M>> = {}
): Promise<string> {
  const url = routeUrl(
    path as string,
    (options.params ?? {}) as Record<string, unknown>,
    (options.query ?? {}) as Record<string, unknown>
  );
  return requestAPI<string>(url, { method: (method as string).toUpperCase() }, 'text');
}

/** How many log lines the viewers fetch. */
export const LOG_TAIL = 2000;

/** Every call the panels make. The panels get it from a React context, so tests can hand in their own. */
export const kubelabApi = {
  workspace: () => call('get', '/workspace'),
  resources: () => call('get', '/resources'),
  cron: (schedule: string, timezone?: string, count = 5) =>
    call('get', '/cron', { query: { schedule, timezone: timezone || undefined, count } }),

  listSchedules: () => call('get', '/schedules'),
  createSchedule: (body: ScheduleCreate) => call('post', '/schedules', { body }),
  updateSchedule: (name: string, body: ScheduleUpdate) =>
    call('patch', '/schedules/{name}', { params: { name }, body }),
  deleteSchedule: (name: string) => call('delete', '/schedules/{name}', { params: { name } }),
  listRuns: (name: string) => call('get', '/schedules/{name}/runs', { params: { name } }),
  runNow: (name: string) => call('post', '/schedules/{name}/runs', { params: { name }, body: {} }),
  runLogs: (name: string, run: string) =>
    callText('get', '/schedules/{name}/runs/{run}/logs', {
      params: { name, run },
      query: { tail: LOG_TAIL }
    }),

  listJobs: () => call('get', '/jobs'),
  submitJob: (body: JobSubmit) => call('post', '/jobs', { body }),
  getJob: (name: string) => call('get', '/jobs/{name}', { params: { name } }),
  cancelJob: (name: string) => call('post', '/jobs/{name}/cancel', { params: { name } }),
  deleteJob: (name: string) => call('delete', '/jobs/{name}', { params: { name } }),
  jobLogs: (name: string, worker = 0) =>
    callText('get', '/jobs/{name}/logs', { params: { name }, query: { worker, tail: LOG_TAIL } }),
  jobPending: (name: string) => call('get', '/jobs/{name}/pending', { params: { name } }),
  serviceLogs: (name: string) =>
    callText('get', '/services/{name}/logs', { params: { name }, query: { tail: LOG_TAIL } }),

  listModels: () => call('get', '/models'),
  registerModel: (body: ModelRegister) => call('post', '/models', { body }),
  setAlias: (name: string, alias: string, version: number | string) =>
    call('put', '/models/{name}/aliases/{alias}', { params: { name, alias }, body: { version } }),

  listServices: () => call('get', '/services'),
  deploy: (body: InferenceServiceCreate) => call('post', '/services', { body }),
  updateService: (name: string, body: Schemas['InferenceServiceUpdate']) =>
    call('patch', '/services/{name}', { params: { name }, body }),
  getService: (name: string) => call('get', '/services/{name}', { params: { name } }),
  rollback: (name: string) => call('post', '/services/{name}/rollback', { params: { name } }),
  deleteService: (name: string) => call('delete', '/services/{name}', { params: { name } }),
  predict: (name: string, body: Record<string, unknown>) =>
    call('post', '/services/{name}/predict', { params: { name }, body }),

  browse: (prefix: string, token?: string | null, pageSize = 100, recursive = false) =>
    call('get', '/datasets/browse', {
      query: { prefix, token: token ?? undefined, page_size: pageSize, recursive: recursive || undefined }
    }),
  preview: (key: string, rows = 20) => call('get', '/datasets/preview', { query: { key, rows } }),
  snippet: (key: string) => call('get', '/datasets/snippet', { query: { key } }),
  registerDataset: (body: DatasetRegister) => call('post', '/datasets/registered', { body })
};

export type KubelabApi = typeof kubelabApi;
