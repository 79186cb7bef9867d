/**
 * kubelab's JupyterLab extension: the kubelab sidebar (datasets, schedules,
 * jobs, models, services, resources), the `kubelab:open` and
 * `kubelab:schedule-notebook` commands, a "Schedule" button in every
 * notebook's toolbar and "Schedule notebook…" in the file browser's context
 * menu on notebooks.
 */
import { ILabShell, ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { Clipboard, CommandToolbarButton, ICommandPalette } from '@jupyterlab/apputils';
import { IDefaultFileBrowser } from '@jupyterlab/filebrowser';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { IHost } from './context';
import { kubelabIcon, KubelabSidebar, SIDEBAR_ID } from './sidebar';

export const CommandIDs = {
  open: 'kubelab:open',
  scheduleNotebook: 'kubelab:schedule-notebook'
};

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'kubelab:plugin',
  description: 'The kubelab sidebar: datasets, schedules, jobs, models, services and resources on Kubernetes.',
  autoStart: true,
  requires: [ILabShell],
  optional: [INotebookTracker, IDefaultFileBrowser, ICommandPalette, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    shell: ILabShell,
    notebooks: INotebookTracker | null,
    browser: IDefaultFileBrowser | null,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null
  ) => {
    const { commands } = app;
    const host: IHost = {
      openFile: path => void commands.execute('docmanager:open', { path }),
      revealFile: path => void commands.execute('filebrowser:go-to-path', { path }),
      copy: text => Clipboard.copyToSystem(text),
      currentNotebook: () => notebooks?.currentWidget?.context.path ?? null
    };
    const sidebar = new KubelabSidebar(host);
    shell.add(sidebar, 'left', { rank: 400 });
    restorer?.add(sidebar, SIDEBAR_ID);

    commands.addCommand(CommandIDs.open, {
      label: 'Open the kubelab sidebar',
      caption: 'Datasets, schedules, jobs, models, services and resources',
      icon: kubelabIcon,
      execute: () => shell.activateById(SIDEBAR_ID)
    });

    /** The notebook the command is about: its argument, the file browser's selection, or the current notebook. */
    const notebookPath = (args: Record<string, unknown>): string | null => {
      if (typeof args.path === 'string' && args.path) {
        return args.path;
      }
      if (typeof args.panelId === 'string' && notebooks) {
        const panel = notebooks.find(p => p.id === args.panelId);
        if (panel) {
          return panel.context.path;
        }
      }
      if (args.fromBrowser && browser) {
        const item = browser.selectedItems().next();
        if (!item.done && item.value.path.endsWith('.ipynb')) {
          return item.value.path;
        }
      }
      return notebooks?.currentWidget?.context.path ?? null;
    };

    commands.addCommand(CommandIDs.scheduleNotebook, {
      label: args => (args.isToolbar ? 'Schedule' : 'Schedule notebook…'),
      caption: 'Run this notebook on a schedule (a Kubernetes CronJob)',
      icon: args => (args.isToolbar || args.isPalette ? kubelabIcon : undefined),
      execute: args => {
        const path = notebookPath(args as Record<string, unknown>);
        shell.activateById(SIDEBAR_ID);
        sidebar.expand('schedules');
        sidebar.scheduleRequests.request({ notebook: path ?? '' });
      }
    });

    app.contextMenu.addItem({
      command: CommandIDs.scheduleNotebook,
      args: { fromBrowser: true },
      selector: '.jp-DirListing-item[data-file-type="notebook"]',
      rank: 10
    });

    notebooks?.widgetAdded.connect((_, panel: NotebookPanel) => {
      const button = new CommandToolbarButton({
        commands,
        id: CommandIDs.scheduleNotebook,
        // The panel, not its path: a renamed notebook is scheduled under its new name.
        args: { isToolbar: true, panelId: panel.id },
        label: 'Schedule'
      });
      button.addClass('kl-schedule-button');
      panel.toolbar.insertAfter('cellType', 'kubelab-schedule', button) ||
        panel.toolbar.addItem('kubelab-schedule', button);
    });

    palette?.addItem({ command: CommandIDs.open, category: 'kubelab' });
  }
};

export default plugin;
