/**
 * The kubelab sidebar: one SidePanel (left area) with six collapsible panels.
 * Each panel is a ReactWidget whose root carries
 * `data-testid="kubelab-panel-<kind>"`; it knows whether it is shown
 * (expanded, sidebar open), and polls slower while it is not.
 */
import { LabIcon, ReactWidget, SidePanel } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import { AccordionPanel, Widget } from '@lumino/widgets';
import React from 'react';
import kubelabSvg from '../style/kubelab.svg';
import { kubelabApi, KubelabApi } from './api';
import { DatasetsPanel } from './components/DatasetsPanel';
import { JobsPanel } from './components/JobsPanel';
import { ModelsPanel } from './components/ModelsPanel';
import { ResourcesPanel } from './components/ResourcesPanel';
import { IScheduleRequest, SchedulesPanel } from './components/SchedulesPanel';
import { ServicesPanel } from './components/ServicesPanel';
import { ApiContext, HostContext, IHost } from './context';
import { FormRequests } from './requests';

export const kubelabIcon = new LabIcon({ name: 'kubelab:icon', svgstr: kubelabSvg });

export const SIDEBAR_ID = 'kubelab-sidebar';

export type PanelKind = 'datasets' | 'schedules' | 'jobs' | 'models' | 'services' | 'resources';

export const PANEL_TITLES: Record<PanelKind, string> = {
  datasets: 'Datasets',
  schedules: 'Schedules',
  jobs: 'Jobs',
  models: 'Models',
  services: 'Services',
  resources: 'Resources'
};

/** One panel: provides the API and host to its React tree, re-renders when shown or hidden. */
export class KubelabPanel extends ReactWidget {
  constructor(
    readonly kind: PanelKind,
    private readonly content: (active: boolean) => JSX.Element,
    private readonly api: KubelabApi,
    private readonly host: IHost
  ) {
    super();
    this.id = `kubelab-panel-${kind}`;
    this.node.dataset.testid = `kubelab-panel-${kind}`;
    this.node.setAttribute('role', 'region');
    this.node.setAttribute('aria-label', PANEL_TITLES[kind]);
    this.addClass('kl-panel');
    this.title.label = PANEL_TITLES[kind];
    this.title.caption = `kubelab: ${PANEL_TITLES[kind]}`;
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this.update();
  }

  protected onAfterHide(msg: Message): void {
    super.onAfterHide(msg);
    this.update();
  }

  render(): JSX.Element {
    return (
      <ApiContext.Provider value={this.api}>
        <HostContext.Provider value={this.host}>{this.content(this.isVisible)}</HostContext.Provider>
      </ApiContext.Provider>
    );
  }
}

export class KubelabSidebar extends SidePanel {
  readonly scheduleRequests = new FormRequests<IScheduleRequest>();
  readonly panels: Record<PanelKind, KubelabPanel>;
  private servicesKey = 0;

  constructor(host: IHost, api: KubelabApi = kubelabApi) {
    super();
    this.id = SIDEBAR_ID;
    this.addClass('kl-sidebar');
    this.title.icon = kubelabIcon;
    this.title.caption = 'kubelab';
    const make = (kind: PanelKind, content: (active: boolean) => JSX.Element) =>
      new KubelabPanel(kind, content, api, host);
    this.panels = {
      datasets: make('datasets', active => <DatasetsPanel active={active} />),
      schedules: make('schedules', active => <SchedulesPanel active={active} requests={this.scheduleRequests} />),
      jobs: make('jobs', active => <JobsPanel active={active} />),
      models: make('models', active => (
        <ModelsPanel
          active={active}
          onDeployed={() => {
            // A deployment shows up in Services at once.
            this.servicesKey++;
            this.panels.services.update();
          }}
        />
      )),
      services: make('services', active => <ServicesPanel active={active} refreshKey={this.servicesKey} />),
      resources: make('resources', active => <ResourcesPanel active={active} />)
    };
    // All open at first (JupyterLab keeps what the user collapses or resizes in the workspace).
    const order: PanelKind[] = ['schedules', 'jobs', 'datasets', 'models', 'services', 'resources'];
    order.forEach(kind => this.addWidget(this.panels[kind]));
  }

  /** Expand one panel (and keep the others as they are). */
  expand(kind: PanelKind): void {
    const widget: Widget = this.panels[kind];
    const index = this.widgets.indexOf(widget);
    if (index >= 0 && widget.isHidden && this.content instanceof AccordionPanel) {
      this.content.expand(index);
    }
  }
}
