/** A recording stand-in for the browser's fetch (the client's only transport) in unit tests. */
import { ServerConnection } from '@jupyterlab/services';
import { setServerSettings } from '../handler';

export interface ISent {
  method: string;
  url: URL;
  body: unknown;
}

export type Responder = (sent: ISent) => { status: number; body?: unknown; text?: string };

/** Route every request of the client to `respond`, and record it. */
export function fakeServer(respond: Responder): ISent[] {
  const sent: ISent[] = [];
  const fetchImpl = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const request = input instanceof Request ? input : new Request(String(input), init);
    const raw = request.method === 'GET' || request.method === 'DELETE' ? '' : await request.text();
    const entry: ISent = {
      method: request.method,
      url: new URL(request.url),
      body: raw ? JSON.parse(raw) : undefined
    };
    sent.push(entry);
    const answer = respond(entry);
    const text = answer.text ?? (answer.body === undefined ? '' : JSON.stringify(answer.body));
    return new Response(answer.status === 204 ? null : text, {
      status: answer.status,
      headers: { 'Content-Type': answer.text !== undefined ? 'text/plain' : 'application/json' }
    });
  };
  setServerSettings(
    ServerConnection.makeSettings({
      baseUrl: 'http://localhost:8000/user/alice/',
      wsUrl: 'ws://localhost:8000/user/alice/',
      token: 'secret',
      appendToken: false,
      fetch: fetchImpl as typeof fetch
    })
  );
  return sent;
}
