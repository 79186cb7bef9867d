import React from 'react';
import { usePoll } from '../poll';
import { ErrorBox, LogViewer } from './common';

/**
 * A log viewer that keeps reading while its pod runs (every few seconds) and
 * reads once when it is done. A log that is not there yet (409, e.g. the pod
 * waits for a node) shows the server's reason.
 */
export function LiveLog(props: {
  fetch: () => Promise<string>;
  live: boolean;
  label: string;
  deps: unknown[];
}): JSX.Element {
  const log = usePoll(props.fetch, {
    interval: props.live ? 3000 : 600_000,
    max: 30_000,
    deps: [...props.deps, props.live]
  });
  return (
    <>
      <ErrorBox error={log.error} />
      {log.data === undefined && log.loading && !log.error && <p className="kl-muted">Reading the log…</p>}
      <LogViewer text={log.data ?? (log.error ? null : null)} label={props.label} />
    </>
  );
}
