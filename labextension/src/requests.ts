import { ISignal, Signal } from '@lumino/signaling';

/**
 * "Open this form prefilled" requests from commands (the notebook toolbar, the
 * file browser's context menu) to a panel that may not be rendered yet: the
 * panel takes the pending request when it mounts, or hears it at once.
 */
export class FormRequests<T> {
  private _pending: T | null = null;
  private _requested = new Signal<this, void>(this);

  get requested(): ISignal<this, void> {
    return this._requested;
  }

  request(value: T): void {
    this._pending = value;
    this._requested.emit();
  }

  take(): T | null {
    const value = this._pending;
    this._pending = null;
    return value;
  }
}
