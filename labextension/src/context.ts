import { createContext, useContext } from 'react';
import { kubelabApi, KubelabApi } from './api';

/** What the panels need from JupyterLab (the plugin provides it; tests hand in their own). */
export interface IHost {
  /** Open a file of the home in JupyterLab (a notebook, an HTML output). */
  openFile(path: string): void;
  /** Show a file or folder of the home in the file browser. */
  revealFile(path: string): void;
  /** Put text on the clipboard. */
  copy(text: string): void;
  /** The path of the notebook in the main area, if one is there. */
  currentNotebook(): string | null;
}

export const nullHost: IHost = {
  openFile: () => undefined,
  revealFile: () => undefined,
  copy: () => undefined,
  currentNotebook: () => null
};

export const ApiContext = createContext<KubelabApi>(kubelabApi);
export const HostContext = createContext<IHost>(nullHost);

export const useApi = (): KubelabApi => useContext(ApiContext);
export const useHost = (): IHost => useContext(HostContext);
