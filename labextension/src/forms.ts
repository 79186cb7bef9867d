/** Pure helpers of the forms (unit-tested without a DOM). */

export const CRON_PRESETS: Array<{ id: string; label: string; cron: string }> = [
  { id: 'hourly', label: 'Hourly (at minute 0)', cron: '0 * * * *' },
  { id: 'daily', label: 'Daily at 06:00', cron: '0 6 * * *' },
  { id: 'weekdays', label: 'Weekdays at 06:00', cron: '0 6 * * 1-5' },
  { id: 'custom', label: 'Custom', cron: '' }
];

/** The preset a cron expression is, else `custom`. */
export function presetOf(cron: string): string {
  const found = CRON_PRESETS.find(p => p.cron && p.cron === cron.trim());
  return found ? found.id : 'custom';
}

/** A value of a `key=value` line: JSON where it parses (numbers, true, "text", [1,2]), else the text. */
function lineValue(text: string): unknown {
  const t = text.trim();
  try {
    return JSON.parse(t);
  } catch {
    return t;
  }
}

/**
 * Papermill parameters from the form: a JSON object, or `key=value` lines
 * (blank lines and `#` comments skipped). Throws an Error with a message for
 * the user when it is neither.
 */
export function parseParameters(text: string): Record<string, unknown> | null {
  const t = text.trim();
  if (!t) {
    return null;
  }
  if (t.startsWith('{')) {
    let value: unknown;
    try {
      value = JSON.parse(t);
    } catch (e) {
      throw new Error(`Parameters: not valid JSON (${(e as Error).message})`);
    }
    if (!value || typeof value !== 'object' || Array.isArray(value)) {
      throw new Error('Parameters: the JSON must be an object, e.g. {"alpha": 0.5}');
    }
    return value as Record<string, unknown>;
  }
  const out: Record<string, unknown> = {};
  t.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (!line || line.startsWith('#')) {
      return;
    }
    const eq = line.indexOf('=');
    if (eq <= 0) {
      throw new Error(`Parameters, line ${i + 1}: write name=value (or a JSON object)`);
    }
    const key = line.slice(0, eq).trim();
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) {
      throw new Error(`Parameters, line ${i + 1}: "${key}" is not a Python name`);
    }
    out[key] = lineValue(line.slice(eq + 1));
  });
  return Object.keys(out).length ? out : null;
}

/** What a job runs, from the path in its Source field. */
export function jobSource(path: string): { notebook: string } | { script: string } {
  const p = path.trim();
  if (p.endsWith('.ipynb')) {
    return { notebook: p };
  }
  if (p.endsWith('.py')) {
    return { script: p };
  }
  throw new Error('Source: give a notebook (.ipynb) or a Python script (.py) in your home');
}

/** The browser's IANA time zone (the form's default). */
export function localTimeZone(): string {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
  } catch {
    return 'UTC';
  }
}
