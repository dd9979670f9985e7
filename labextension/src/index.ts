/**
 * nb2prod in JupyterLab: an "Export to production" toolbar button on notebooks, commands to
 * give cells a role, role badges on tagged cells (tags and `#|` directives), findings shown on
 * their cells and re-checked on every save, and the nb2prod side panel (build state, training
 * with overrides, runs, diff, promote and roll back).
 */
import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, InputDialog, Notification, ToolbarButton } from '@jupyterlab/apputils';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { LabIcon } from '@jupyterlab/ui-components';
import { DocumentRegistry } from '@jupyterlab/docregistry';
import {
  INotebookModel,
  INotebookTracker,
  NotebookPanel
} from '@jupyterlab/notebook';
import { DisposableDelegate, IDisposable } from '@lumino/disposable';
import { Menu } from '@lumino/widgets';

import { IFinding, IInspectReply, RequestError, requestBuild, requestInspect } from './api';
import { CellDecorator } from './decorations';
import { showBuildDialog, showFailure } from './dialog';
import { IPanelSettings, Nb2prodSidePanel } from './panel';
import {
  ROLES,
  Role,
  addRole,
  directives,
  hasAnyRole,
  isModuleName,
  removeDirectives,
  removeRole,
  removeRoles,
  setExportModule
} from './roles';

const PLUGIN_ID = 'nb2prod:plugin';

namespace CommandIDs {
  export const exportNotebook = 'nb2prod:export';
  export const inspect = 'nb2prod:inspect';
  export const removeRoles = 'nb2prod:remove-roles';
  export const openPanel = 'nb2prod:open-panel';
  export const exportModule = 'nb2prod:export-module';
  export const setRole = (role: Role) => `nb2prod:set-role-${role}`;
}

/** The decorator of each open notebook. */
const decorators = new WeakMap<NotebookPanel, CellDecorator>();

function decoratorOf(panel: NotebookPanel): CellDecorator {
  let decorator = decorators.get(panel);
  if (!decorator || decorator.isDisposed) {
    decorator = new CellDecorator(panel);
    decorators.set(panel, decorator);
    panel.disposed.connect(() => decorator!.dispose());
  }
  return decorator;
}

/** The notebook's path as the server sees it (without a drive prefix). */
function serverPath(app: JupyterFrontEnd, panel: NotebookPanel): string {
  return app.serviceManager.contents.localPath(panel.context.path);
}

/** Re-run inspect on save, debounced: findings that no longer hold disappear, new ones show. */
const SAVE_DEBOUNCE_MS = 400;
const saveTimers = new WeakMap<NotebookPanel, number>();

function watchSaves(app: JupyterFrontEnd, panel: NotebookPanel, onChecked: (panel: NotebookPanel) => void): void {
  panel.context.saveState.connect((_, state) => {
    if (state !== 'completed') {
      return;
    }
    window.clearTimeout(saveTimers.get(panel));
    saveTimers.set(
      panel,
      window.setTimeout(() => void refreshFindings(app, panel).then(() => onChecked(panel)), SAVE_DEBOUNCE_MS)
    );
  });
}

/** The latest inspect asked for each notebook: an older answer arriving later is dropped. */
const inspectTickets = new WeakMap<NotebookPanel, number>();

/**
 * Inspect the notebook and draw its findings, unless a newer inspect of it was asked for
 * meanwhile (answers can arrive out of order); null when this answer was superseded.
 */
async function inspectAndShow(app: JupyterFrontEnd, panel: NotebookPanel): Promise<IInspectReply | null> {
  const ticket = (inspectTickets.get(panel) ?? 0) + 1;
  inspectTickets.set(panel, ticket);
  const reply = await requestInspect(serverPath(app, panel));
  if (inspectTickets.get(panel) !== ticket || panel.isDisposed) {
    return null;
  }
  decoratorOf(panel).setFindings(reply.findings);
  sidebarRef?.showInspection(panel, reply);
  return reply;
}

let sidebarRef: Nb2prodSidePanel | null = null;

/** Ask the server for the notebook's findings and draw them (also after a page reload). */
async function refreshFindings(app: JupyterFrontEnd, panel: NotebookPanel): Promise<void> {
  await panel.context.ready;
  try {
    await inspectAndShow(app, panel);
  } catch (error) {
    console.warn('nb2prod: inspect failed:', error);
  }
}

const SIDEBAR_ICON = new LabIcon({
  name: 'nb2prod:panel',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 16 16">' +
    '<path class="jp-icon3" fill="#616161" d="M2 2h12v3H2zm0 4.5h7v3H2zm0 4.5h12v3H2zm8.5-4.5H14v3h-3.5z"/></svg>'
});

/** Panels with a build running, so one click cannot start a second build of the same notebook. */
const building = new WeakSet<NotebookPanel>();

async function exportNotebook(app: JupyterFrontEnd, panel: NotebookPanel, force = false): Promise<void> {
  if (building.has(panel)) {
    return;
  }
  building.add(panel);
  panel.node.classList.add('jp-nb2prod-building');
  try {
    await panel.context.ready;
    if (panel.context.model.dirty && !panel.context.model.readOnly) {
      await panel.context.save();
    }
    const reply = await requestBuild(serverPath(app, panel), force);
    const findings: IFinding[] = reply.ok
      ? (reply.result?.notes ?? [])
      : reply.findings;
    decoratorOf(panel).setFindings(findings);
    if (reply.ok && app.commands.hasCommand('filebrowser:refresh')) {
      void app.commands.execute('filebrowser:refresh'); // show the new build folder
    }
    let again = false;
    await showBuildDialog(reply, panel, () => (again = true));
    if (again) {
      building.delete(panel);
      await exportNotebook(app, panel, true);
    }
  } catch (error) {
    const message =
      error instanceof RequestError ? error.message : `Export to production failed: ${error}`;
    console.error('nb2prod:', error);
    await showFailure(message);
  } finally {
    building.delete(panel);
    panel.node.classList.remove('jp-nb2prod-building');
  }
}

async function inspectNotebook(app: JupyterFrontEnd, panel: NotebookPanel): Promise<void> {
  await panel.context.ready;
  if (panel.context.model.dirty && !panel.context.model.readOnly) {
    await panel.context.save();
  }
  try {
    const reply = await inspectAndShow(app, panel);
    if (reply === null) {
      return; // a newer inspect of this notebook answers instead
    }
    const errors = reply.findings.filter(f => f.severity === 'error').length;
    const notes = reply.findings.length - errors;
    if (!reply.ok && reply.error) {
      Notification.error(`nb2prod: ${reply.error.message}`, { autoClose: 8000 });
    } else if (errors > 0) {
      Notification.warning(
        `nb2prod: ${errors} error${errors === 1 ? '' : 's'} and ${notes} note${notes === 1 ? '' : 's'}, shown on their cells.`,
        { autoClose: 5000 }
      );
    } else {
      Notification.success(
        `nb2prod: no errors${notes ? `, ${notes} note${notes === 1 ? '' : 's'} shown on their cells` : ''}.`,
        { autoClose: 5000 }
      );
    }
  } catch (error) {
    Notification.error(error instanceof Error ? error.message : String(error), { autoClose: 8000 });
  }
}

/** Adds the "Export to production" button to every notebook's toolbar. */
class ExportButtonExtension
  implements DocumentRegistry.IWidgetExtension<NotebookPanel, INotebookModel>
{
  constructor(app: JupyterFrontEnd) {
    this._app = app;
  }

  createNew(panel: NotebookPanel): IDisposable {
    decoratorOf(panel);
    const button = new ToolbarButton({
      className: 'jp-nb2prod-export-button',
      label: 'Export to production',
      tooltip: 'Build the package, tests, training job and image spec from the tagged cells (nb2prod)',
      onClick: () => void exportNotebook(this._app, panel)
    });
    panel.toolbar.insertItem(10, 'nb2prodExport', button);
    return new DisposableDelegate(() => button.dispose());
  }

  private _app: JupyterFrontEnd;
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Export a tagged notebook to production with nb2prod.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ICommandPalette, ISettingRegistry],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    palette: ICommandPalette | null,
    settingRegistry: ISettingRegistry | null
  ) => {
    const { commands } = app;
    const settings: IPanelSettings = { storeFolder: '', defaultAlias: 'production', engine: 'papermill' };
    const sidebar = new Nb2prodSidePanel({
      serverPath: panel => serverPath(app, panel),
      settings: () => settings,
      inspect: panel => inspectAndShow(app, panel)
    });
    sidebar.title.icon = SIDEBAR_ICON;
    sidebarRef = sidebar;
    app.shell.add(sidebar, 'left', { rank: 650 });
    if (settingRegistry) {
      void settingRegistry
        .load(PLUGIN_ID)
        .then(loaded => {
          const apply = () => {
            settings.storeFolder = String(loaded.get('storeFolder').composite ?? '');
            settings.defaultAlias = String(loaded.get('defaultAlias').composite ?? 'production') || 'production';
            settings.engine = String(loaded.get('engine').composite ?? 'papermill');
            void sidebar.refresh();
          };
          apply();
          loaded.changed.connect(apply);
        })
        .catch(error => console.warn('nb2prod: settings not loaded:', error));
    }
    tracker.currentChanged.connect((_, panel) => sidebar.setNotebook(panel));
    sidebar.setNotebook(tracker.currentWidget);
    const current = (): NotebookPanel | null => tracker.currentWidget;
    const hasNotebook = () => current() !== null;
    const selectedModels = () => {
      const panel = current();
      if (!panel) {
        return [];
      }
      const notebook = panel.content;
      return notebook.widgets
        .filter(cell => notebook.isSelectedOrActive(cell))
        .map(cell => cell.model);
    };

    commands.addCommand(CommandIDs.exportNotebook, {
      label: 'nb2prod: Export to production',
      caption: 'Build the package, tests, training job and image spec from the tagged cells',
      isEnabled: hasNotebook,
      execute: () => {
        const panel = current();
        return panel ? exportNotebook(app, panel) : undefined;
      }
    });

    commands.addCommand(CommandIDs.inspect, {
      label: 'nb2prod: inspect',
      caption: 'Show nb2prod findings (missing tags, notes) on the cells they are about',
      isEnabled: hasNotebook,
      execute: () => {
        const panel = current();
        return panel ? inspectNotebook(app, panel) : undefined;
      }
    });

    for (const role of ROLES) {
      commands.addCommand(CommandIDs.setRole(role), {
        label: args => (args.short ? role : `nb2prod: set role → ${role}`),
        caption: `Give the selected cells the nb2prod role "${role}" (metadata tag "${role}")`,
        isEnabled: hasNotebook,
        isToggled: () => {
          const models = selectedModels().filter(model => model.type === 'code');
          return models.length > 0 && models.every(model => hasAnyRole(model, role));
        },
        execute: () => {
          // The menu toggles (its check mark says every selected cell has the role): when all
          // selected code cells have it, it is taken away (tags and directive lines), else added.
          // Roles belong to code cells; a markdown cell in the selection is left as it is.
          const models = selectedModels().filter(model => model.type === 'code');
          const all = models.length > 0 && models.every(model => hasAnyRole(model, role));
          for (const model of models) {
            if (all) {
              removeRole(model, role);
            } else {
              addRole(model, role);
            }
          }
        }
      });
    }

    commands.addCommand(CommandIDs.removeRoles, {
      label: 'nb2prod: remove nb2prod roles',
      caption: 'Remove every nb2prod role (tags and #| directive lines) from the selected cells',
      isEnabled: hasNotebook,
      execute: () => {
        let removed = 0;
        for (const model of selectedModels()) {
          const lines = directives(model).map(d => d.line);
          removed += removeDirectives(model);
          removeRoles(model);
          if (lines.length) {
            Notification.info(`nb2prod: removed the role directive line${lines.length === 1 ? '' : 's'} ${lines.join(', ')}.`, {
              autoClose: 4000
            });
          }
        }
        return removed;
      }
    });

    commands.addCommand(CommandIDs.exportModule, {
      label: args => (args.short ? 'to a module…' : 'nb2prod: export the selected cells to a module…'),
      caption: 'Give the selected cells the role export: MODULE (the tag export:MODULE)',
      isEnabled: hasNotebook,
      execute: async () => {
        const models = selectedModels().filter(model => model.type === 'code');
        if (models.length === 0) {
          return;
        }
        const answer = await InputDialog.getText({ title: 'Export to module', placeholder: 'features' });
        const module = (answer.value ?? '').trim();
        if (!answer.button.accept || !module) {
          return;
        }
        if (!isModuleName(module)) {
          Notification.error(`nb2prod: ${JSON.stringify(module)} is not a module name (letters, digits, _ and dots).`, {
            autoClose: 6000
          });
          return;
        }
        for (const model of models) {
          setExportModule(model, module);
        }
      }
    });

    commands.addCommand(CommandIDs.openPanel, {
      label: 'nb2prod: open the side panel',
      caption: 'Build state, training, runs, promote and roll back for the current notebook',
      execute: () => {
        app.shell.activateById(sidebar.id);
        void sidebar.refresh();
      }
    });

    if (palette) {
      const category = 'nb2prod';
      palette.addItem({ command: CommandIDs.exportNotebook, category });
      palette.addItem({ command: CommandIDs.inspect, category });
      for (const role of ROLES) {
        palette.addItem({ command: CommandIDs.setRole(role), category });
      }
      palette.addItem({ command: CommandIDs.removeRoles, category });
      palette.addItem({ command: CommandIDs.openPanel, category });
      palette.addItem({ command: CommandIDs.exportModule, category });
    }

    const roleMenu = new Menu({ commands });
    roleMenu.title.label = 'nb2prod role';
    roleMenu.addClass('jp-nb2prod-role-menu');
    for (const role of ROLES) {
      roleMenu.addItem({ command: CommandIDs.setRole(role), args: { short: true } });
    }
    roleMenu.addItem({ command: CommandIDs.exportModule, args: { short: true } });
    roleMenu.addItem({ type: 'separator' });
    roleMenu.addItem({ command: CommandIDs.removeRoles });
    app.contextMenu.addItem({
      type: 'submenu',
      submenu: roleMenu,
      selector: '.jp-Notebook .jp-Cell',
      rank: 20
    });
    app.contextMenu.addItem({
      command: CommandIDs.inspect,
      selector: '.jp-Notebook .jp-Cell',
      rank: 21
    });

    app.docRegistry.addWidgetExtension('Notebook', new ExportButtonExtension(app));
    tracker.widgetAdded.connect((_, panel) => {
      decoratorOf(panel);
      // Findings come from the server when a notebook opens (so they survive a page reload)
      // and again after every save.
      void refreshFindings(app, panel);
      watchSaves(app, panel, saved => {
        if (saved === sidebar.notebook) {
          void sidebar.refresh();
        }
      });
    });
  }
};

export default plugin;
