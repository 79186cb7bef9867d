/**
 * The one place that talks HTTP to the kubelab server extension
 * (`{base_url}kubelab/api/...`), in the style of jupyterlab-git's handler.ts.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** The API's root below the server's base URL. */
export const API_BASE = 'kubelab/api';

/** An answer of the API that is not a success: its `{code, message}`. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code: number | string = status
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

let settings: ServerConnection.ISettings | null = null;

/** The connection settings every request uses (tests set their own). */
export function serverSettings(): ServerConnection.ISettings {
  if (!settings) {
    settings = ServerConnection.makeSettings();
  }
  return settings;
}

export function setServerSettings(s: ServerConnection.ISettings | null): void {
  settings = s;
}

/** The message of a failed response: its JSON `message`, else its text, else the status. */
async function errorOf(response: Response): Promise<ApiError> {
  const text = await response.text().catch(() => '');
  let message = '';
  let code: number | string = response.status;
  try {
    const data = JSON.parse(text);
    if (data && typeof data === 'object') {
      message = typeof data.message === 'string' ? data.message : '';
      code = data.code ?? code;
    }
  } catch {
    message = text.split('\n')[0].slice(0, 300);
  }
  if (!message) {
    message = `${response.status} ${response.statusText || 'error'}`.trim();
  }
  return new ApiError(response.status, message, code);
}

/**
 * Call the kubelab REST API.
 *
 * @param endPoint the path below `kubelab/api/` with its query, e.g. `schedules?x=1`
 * @param init the fetch options (method, body)
 * @param as how to read a successful answer: JSON (default) or text
 */
export async function requestAPI<T>(
  endPoint = '',
  init: RequestInit = {},
  as: 'json' | 'text' = 'json'
): Promise<T> {
  const s = serverSettings();
  const url = URLExt.join(s.baseUrl, API_BASE, endPoint);
  if (init.body !== undefined && init.body !== null) {
    const headers = new Headers(init.headers ?? {});
    if (!headers.has('Content-Type')) {
      headers.set('Content-Type', 'application/json');
    }
    init = { ...init, headers };
  }
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, s);
  } catch (error) {
    throw new ApiError(0, `Cannot reach the server: ${(error as Error).message}`);
  }
  if (!response.ok) {
    throw await errorOf(response);
  }
  if (as === 'text') {
    return (await response.text()) as unknown as T;
  }
  const text = await response.text();
  if (!text) {
    return undefined as unknown as T;
  }
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new ApiError(response.status, 'The server answered with something that is not JSON.');
  }
}
