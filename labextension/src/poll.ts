/**
 * Live data for the panels: a @lumino/polling Poll per list, with exponential
 * backoff after failures, a slower pace while the panel is collapsed or the
 * sidebar hidden, standby while the browser tab is hidden, and an immediate
 * tick after an action (`refresh`).
 */
import { Poll } from '@lumino/polling';
import { useCallback, useEffect, useRef, useState } from 'react';

export interface IPollOptions {
  /** Milliseconds between ticks while the panel is shown. */
  interval: number;
  /** The most milliseconds between ticks after failures (backoff). */
  max?: number;
  /** Whether the panel is shown; a hidden panel polls `idleFactor` times slower. */
  active?: boolean;
  idleFactor?: number;
  /** Re-create the poll (and fetch at once) when these change. */
  deps?: unknown[];
}

export interface IPolled<T> {
  data: T | undefined;
  error: Error | null;
  loading: boolean;
  /** Fetch now (e.g. after an action); resolves when that fetch is done. */
  refresh: () => Promise<void>;
}

export function usePoll<T>(factory: () => Promise<T>, options: IPollOptions): IPolled<T> {
  const { interval, max = 60_000, active = true, idleFactor = 6, deps = [] } = options;
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<Error | null>(null);
  const [loading, setLoading] = useState(true);
  const factoryRef = useRef(factory);
  factoryRef.current = factory;
  const pollRef = useRef<Poll | null>(null);
  const waiters = useRef<Array<() => void>>([]);
  const frequency = (shown: boolean) => {
    const every = shown ? interval : interval * idleFactor;
    return { interval: every, backoff: true, max: Math.max(max, every) };
  };
  const activeRef = useRef(active);
  activeRef.current = active;

  useEffect(() => {
    let alive = true;
    const settle = () => {
      const done = waiters.current;
      waiters.current = [];
      done.forEach(resolve => resolve());
    };
    setLoading(true);
    const poll = new Poll({
      auto: true,
      factory: async () => {
        try {
          const value = await factoryRef.current();
          if (alive) {
            setData(value);
            setError(null);
            setLoading(false);
          }
        } catch (e) {
          if (alive) {
            setError(e as Error);
            setLoading(false);
          }
          throw e; // the Poll backs off
        } finally {
          settle();
        }
      },
      frequency: frequency(activeRef.current),
      standby: 'when-hidden',
      name: 'kubelab'
    });
    pollRef.current = poll;
    return () => {
      alive = false;
      pollRef.current = null;
      poll.dispose();
      settle();
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, deps);

  useEffect(() => {
    const poll = pollRef.current;
    if (poll && !poll.isDisposed) {
      poll.frequency = frequency(active);
    }
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [active, interval, idleFactor, max]);

  const refresh = useCallback(() => {
    const poll = pollRef.current;
    if (!poll || poll.isDisposed) {
      return Promise.resolve();
    }
    const done = new Promise<void>(resolve => waiters.current.push(resolve));
    void poll.refresh();
    return done;
  }, []);

  return { data, error, loading, refresh };
}
