/**
 * The dialog shown after "Export to production": what was built, or which cells must change.
 */
import { Dialog } from '@jupyterlab/apputils';
import { NotebookPanel } from '@jupyterlab/notebook';
import { Widget } from '@lumino/widgets';

import { IBuildReply, IFinding, ILocation } from './api';
import { cellIndexOf, describeLocation, goToCell } from './decorations';

function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className: string,
  text?: string
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  node.className = className;
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

/** A link that closes the dialog and selects the cell at `location`; null if no such cell. */
function cellLink(
  location: ILocation | null,
  className: string,
  panel: NotebookPanel,
  close: () => void
): HTMLAnchorElement | null {
  const index = cellIndexOf(panel.content, location);
  if (!location || index === null) {
    return null;
  }
  const link = element('a', className, describeLocation(location));
  link.href = '#';
  link.dataset.cellIndex = String(index);
  link.title = 'Select this cell in the notebook';
  link.addEventListener('click', event => {
    event.preventDefault();
    close();
    void goToCell(panel, index, location.line);
  });
  return link;
}

/**
 * A list of findings; each one that points at a cell has a link that closes the dialog,
 * selects that cell and scrolls to it.
 */
function findingList(
  findings: IFinding[],
  panel: NotebookPanel,
  close: () => void
): HTMLElement {
  const list = element('ul', 'jp-nb2prod-findings');
  for (const finding of findings) {
    const item = element(
      'li',
      `jp-nb2prod-finding jp-nb2prod-severity-${finding.severity}`
    );
    item.dataset.code = finding.code;
    item.appendChild(element('span', 'jp-nb2prod-finding-severity', finding.severity));
    const link = cellLink(finding.location, 'jp-nb2prod-finding-link', panel, close);
    if (link) {
      item.appendChild(link);
    } else if (finding.location) {
      item.appendChild(element('span', 'jp-nb2prod-finding-place', describeLocation(finding.location)));
    }
    item.appendChild(element('span', 'jp-nb2prod-finding-message', finding.message));
    if (finding.fix) {
      item.appendChild(element('span', 'jp-nb2prod-finding-fix', finding.fix));
    }
    // The other cell involved, e.g. the untagged cell that defines a name: often the one to tag.
    const related = cellLink(finding.related, 'jp-nb2prod-related-link', panel, close);
    if (related && finding.related) {
      const line = element('span', 'jp-nb2prod-finding-related', 'Related: ');
      if (!finding.related.role && finding.related.cell_id) {
        related.textContent = `${describeLocation(finding.related)} (id ${finding.related.cell_id})`;
      }
      line.appendChild(related);
      item.appendChild(line);
    }
    list.appendChild(item);
  }
  return list;
}

function successBody(reply: IBuildReply, body: HTMLElement, panel: NotebookPanel, close: () => void): void {
  const result = reply.result!;
  const where = element('p', 'jp-nb2prod-output');
  where.append('Package ');
  where.appendChild(element('code', 'jp-nb2prod-package', result.package));
  where.append(result.changed ? ' written to ' : ' is up to date in ');
  const folder = element('code', 'jp-nb2prod-output-dir', reply.output_path ?? result.output_dir);
  folder.title = result.output_dir;
  where.appendChild(folder);
  body.appendChild(where);

  body.appendChild(element('h3', 'jp-nb2prod-heading', `Generated files (${result.files.length})`));
  const files = element('ul', 'jp-nb2prod-files');
  for (const file of result.files) {
    files.appendChild(element('li', 'jp-nb2prod-file', file));
  }
  body.appendChild(files);

  const notes = result.notes ?? [];
  if (notes.length > 0) {
    body.appendChild(element('h3', 'jp-nb2prod-heading', `Notes (${notes.length})`));
    body.appendChild(findingList(notes, panel, close));
  }
}

function errorBody(reply: IBuildReply, body: HTMLElement, panel: NotebookPanel, close: () => void): void {
  const kind = reply.error?.kind ?? 'error';
  const located = reply.findings.some(f => cellIndexOf(panel.content, f.location) !== null);
  if (!located) {
    // Nothing to link to (unreadable notebook, hand-edited output...): the message says it all.
    body.appendChild(
      element('p', `jp-nb2prod-error jp-nb2prod-error-${kind}`, reply.error?.message ?? 'The build failed.')
    );
  }
  if (reply.findings.length > 0) {
    body.appendChild(
      element('p', 'jp-nb2prod-hint', 'Follow a link to the cell that must change.')
    );
    body.appendChild(findingList(reply.findings, panel, close));
  }
}

/** Show the outcome of a build of the notebook in `panel`; resolves when the dialog closes. */
export async function showBuildDialog(
  reply: IBuildReply,
  panel: NotebookPanel,
  onForce: (() => void) | null = null
): Promise<void> {
  const body = new Widget();
  body.addClass('jp-nb2prod-dialog-body');
  const errors = reply.findings.filter(f => f.severity === 'error').length;
  // A hand-edited or hand-added file blocks the build: offer to overwrite it, as --force does.
  const forcible = !reply.ok && reply.error?.kind === 'output-conflict' && /--force/.test(reply.error.message);
  const title = reply.ok
    ? 'Exported to production'
    : errors > 0
      ? `Export to production: ${errors} error${errors === 1 ? '' : 's'} to fix`
      : 'Export to production failed';
  const dialog = new Dialog({
    title,
    body,
    buttons:
      forcible && onForce
        ? [Dialog.cancelButton({ label: 'Close' }), Dialog.warnButton({ label: 'Force rebuild' })]
        : [Dialog.okButton({ label: 'Close' })]
  });
  dialog.addClass('jp-nb2prod-dialog');
  dialog.addClass(reply.ok ? 'jp-nb2prod-dialog-ok' : 'jp-nb2prod-dialog-failed');
  const close = () => dialog.resolve(0);
  if (reply.ok) {
    successBody(reply, body.node, panel, close);
  } else {
    errorBody(reply, body.node, panel, close);
  }
  let result: Dialog.IResult<unknown> | null = null;
  try {
    result = await dialog.launch();
  } finally {
    dialog.dispose();
  }
  if (forcible && onForce && result?.button.accept) {
    onForce();
  }
}

/** Show an error that is not about a cell (server extension missing, network failure...). */
export async function showFailure(message: string): Promise<void> {
  const body = new Widget();
  body.addClass('jp-nb2prod-dialog-body');
  body.node.appendChild(element('p', 'jp-nb2prod-error', message));
  const dialog = new Dialog({
    title: 'Export to production failed',
    body,
    buttons: [Dialog.okButton({ label: 'Close' })]
  });
  dialog.addClass('jp-nb2prod-dialog');
  dialog.addClass('jp-nb2prod-dialog-failed');
  try {
    await dialog.launch();
  } finally {
    dialog.dispose();
  }
}
