/**
 * What nb2prod draws on the cells: a role badge on tagged cells and the findings of the
 * last build or inspect under the cell they are about.
 */
import { Cell, ICellModel } from '@jupyterlab/cells';
import { Notebook, NotebookPanel } from '@jupyterlab/notebook';
import { IDisposable } from '@lumino/disposable';

import { IFinding, ILocation } from './api';
import { directives, roleOfTag, roleTags } from './roles';

const TAGGED_CLASS = 'jp-nb2prod-tagged';
const BADGES_CLASS = 'jp-nb2prod-badges';
const BADGE_CLASS = 'jp-nb2prod-badge';
const FINDINGS_CLASS = 'jp-nb2prod-cell-findings';
const HAS_ERROR_CLASS = 'jp-nb2prod-has-error';
const HAS_NOTE_CLASS = 'jp-nb2prod-has-note';

/** Describe a location as a person reads it: "cell 3 (train), line 2". */
export function describeLocation(location: ILocation): string {
  if (location.cell_index === null || location.cell_index === undefined) {
    return location.notebook;
  }
  let text = `cell ${location.cell_index + 1}`;
  if (location.role) {
    text += ` (${location.role})`;
  }
  if (location.line !== null && location.line !== undefined) {
    text += `, line ${location.line}`;
  }
  return text;
}

/** The index of the cell a location points at: by cell id first, then by index. */
export function cellIndexOf(
  notebook: Notebook,
  location: ILocation | null
): number | null {
  if (!location) {
    return null;
  }
  const widgets = notebook.widgets;
  if (location.cell_id) {
    const byId = widgets.findIndex(cell => cell.model.id === location.cell_id);
    if (byId >= 0) {
      return byId;
    }
  }
  const index = location.cell_index;
  if (typeof index === 'number' && index >= 0 && index < widgets.length) {
    return index;
  }
  return null;
}

/**
 * Make the cell at `index` the only selected, active cell, scroll it into view and, when a
 * line is given, put the editor's cursor on that line; the notebook stays in command mode.
 */
export async function goToCell(
  panel: NotebookPanel,
  index: number,
  line: number | null = null
): Promise<void> {
  const notebook = panel.content;
  notebook.mode = 'command';
  notebook.deselectAll();
  notebook.activeCellIndex = index;
  const cell = notebook.widgets[index];
  if (cell) {
    await notebook.scrollToCell(cell, 'center');
    if (line !== null && line !== undefined && cell.editor) {
      const lines = cell.model.sharedModel.getSource().split('\n').length;
      cell.editor.setCursorPosition({ line: Math.min(Math.max(line - 1, 0), lines - 1), column: 0 });
      cell.node.dataset.nb2prodLine = String(line);
      notebook.mode = 'command'; // placing the cursor must not leave the notebook in edit mode
    }
    cell.node.classList.add('jp-nb2prod-flash');
    window.setTimeout(() => cell.node.classList.remove('jp-nb2prod-flash'), 1600);
  }
  notebook.activate();
}

function renderBadges(cell: Cell): void {
  // Tag roles and `#|` directive roles look the same: a badge per role, in the cell's order.
  const badges = [
    ...roleTags(cell.model).map(tag => ({
      text: tag.replace(/\s+/g, ''),
      role: roleOfTag(tag) ?? 'other',
      title: `nb2prod role (tag): ${tag}`
    })),
    ...directives(cell.model).map(d => ({
      text: d.text.replace(/\s+/g, ''),
      role: d.role,
      title: `nb2prod role (directive on line ${d.line}): #| ${d.text}`
    }))
  ];
  let holder = cell.node.querySelector<HTMLElement>(`:scope > .${BADGES_CLASS}`);
  if (badges.length === 0) {
    holder?.remove();
    cell.node.classList.remove(TAGGED_CLASS);
    return;
  }
  if (!holder) {
    holder = document.createElement('div');
    holder.className = BADGES_CLASS;
    cell.node.insertBefore(holder, cell.node.firstChild);
  }
  holder.replaceChildren(
    ...badges.map(item => {
      const badge = document.createElement('span');
      badge.className = `${BADGE_CLASS} ${BADGE_CLASS}-${item.role}`;
      badge.textContent = item.text;
      badge.title = item.title;
      return badge;
    })
  );
  cell.node.classList.add(TAGGED_CLASS);
}

/** End the text as a sentence (findings' messages are written without the final stop). */
function sentence(text: string): string {
  const trimmed = text.trim();
  return /[.!?]$/.test(trimmed) ? trimmed : `${trimmed}.`;
}

function renderFindings(cell: Cell, findings: IFinding[]): void {
  cell.node.querySelector(`:scope > .${FINDINGS_CLASS}`)?.remove();
  cell.node.classList.remove(HAS_ERROR_CLASS, HAS_NOTE_CLASS);
  if (findings.length === 0) {
    return;
  }
  const box = document.createElement('div');
  box.className = FINDINGS_CLASS;
  for (const finding of findings) {
    const item = document.createElement('div');
    item.className = `jp-nb2prod-cell-finding jp-nb2prod-severity-${finding.severity}`;
    const where =
      finding.location?.line !== null && finding.location?.line !== undefined
        ? `line ${finding.location.line}: `
        : '';
    item.textContent = `nb2prod ${finding.severity}: ${where}${sentence(finding.message)}${
      finding.fix ? ' ' + sentence(finding.fix) : ''
    }`;
    box.appendChild(item);
  }
  cell.node.appendChild(box);
  const hasError = findings.some(f => f.severity === 'error');
  cell.node.classList.add(hasError ? HAS_ERROR_CLASS : HAS_NOTE_CLASS);
}

/**
 * Keeps one notebook's cells decorated: badges follow the tags as they change, and the
 * findings last given to `setFindings` stay on their cells until the next call.
 */
export class CellDecorator implements IDisposable {
  constructor(panel: NotebookPanel) {
    this._panel = panel;
    void panel.context.ready.then(() => {
      if (this._disposed) {
        return;
      }
      panel.content.model?.cells.changed.connect(this._schedule, this);
      this.refresh();
    });
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  dispose(): void {
    if (this._disposed) {
      return;
    }
    this._disposed = true;
    this._panel.content.model?.cells.changed.disconnect(this._schedule, this);
    for (const model of this._watched) {
      model.metadataChanged.disconnect(this._schedule, this);
      model.contentChanged.disconnect(this._schedule, this);
    }
    this._watched.clear();
  }

  /** Show these findings on their cells, replacing the ones shown before. */
  setFindings(findings: IFinding[]): void {
    const byCell = new Map<string, IFinding[]>();
    const notebook = this._panel.content;
    for (const finding of findings) {
      const index = cellIndexOf(notebook, finding.location);
      if (index === null) {
        continue;
      }
      const id = notebook.widgets[index].model.id;
      byCell.set(id, [...(byCell.get(id) ?? []), finding]);
    }
    this._findings = byCell;
    this.refresh();
  }

  /** Redraw badges and findings on every cell. */
  refresh(): void {
    if (this._disposed) {
      return;
    }
    for (const cell of this._panel.content.widgets) {
      if (!this._watched.has(cell.model)) {
        this._watched.add(cell.model);
        cell.model.metadataChanged.connect(this._schedule, this);
        cell.model.contentChanged.connect(this._schedule, this);
      }
      renderBadges(cell);
      renderFindings(cell, this._findings.get(cell.model.id) ?? []);
    }
  }

  private _schedule(): void {
    if (this._pending) {
      return;
    }
    this._pending = true;
    // Let the notebook create the widgets of new cells before drawing on them.
    window.setTimeout(() => {
      this._pending = false;
      this.refresh();
    }, 0);
  }

  private _panel: NotebookPanel;
  private _disposed = false;
  private _pending = false;
  private _findings = new Map<string, IFinding[]>();
  private _watched = new Set<ICellModel>();
}
