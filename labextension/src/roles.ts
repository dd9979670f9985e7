/**
 * Cell roles as nb2prod reads them: plain strings in `cell.metadata.tags`.
 *
 * `export: MODULE` is written as the tag `export:MODULE` (tags cannot hold spaces in
 * JupyterLab's tag editor); the command line reads both spellings. The commands write the
 * plain role names, exactly the tags `nb2prod build` reads.
 */
import { ICellModel } from '@jupyterlab/cells';

/** The roles a user can set from the commands, in the order they are listed. */
export const ROLES = [
  'parameters',
  'export',
  'train',
  'metrics',
  'predict',
  'test',
  'skip'
] as const;

export type Role = (typeof ROLES)[number];

/** Markers of nbdev and Kubeflow Kale that nb2prod reads as one of its roles. */
const ALIASES: { [marker: string]: Role } = {
  exports: 'export',
  exporti: 'export',
  imports: 'export',
  functions: 'export',
  'pipeline-parameters': 'parameters',
  'pipeline-metrics': 'metrics'
};

/**
 * The role a tag gives its cell, read as the command line reads it: case-insensitive,
 * `export:features` / `export: features` / `export features` name an export module, nbdev and
 * Kale markers map onto roles (`block:NAME` is a training step). Null for other tags.
 */
export function roleOfTag(tag: string): Role | null {
  const text = tag.trim();
  const lowered = text.toLowerCase();
  if (lowered.startsWith('block:') || lowered === 'block') {
    return 'train';
  }
  const word = lowered.split(/[:\s]/, 1)[0].trim();
  const role = ALIASES[word] ?? word;
  return (ROLES as readonly string[]).includes(role) ? (role as Role) : null;
}

/** The cell's tags, whatever shape the metadata has (a missing or malformed list gives []). */
export function getTags(model: ICellModel): string[] {
  const tags = model.getMetadata('tags');
  if (!Array.isArray(tags)) {
    return [];
  }
  return tags.filter((tag): tag is string => typeof tag === 'string');
}

/** The tags of the cell that give it an nb2prod role, in the cell's own order. */
export function roleTags(model: ICellModel): string[] {
  return getTags(model).filter(tag => roleOfTag(tag) !== null);
}

function writeTags(model: ICellModel, tags: string[]): void {
  if (tags.length === 0) {
    model.deleteMetadata('tags');
  } else {
    model.setMetadata('tags', tags);
  }
}

/**
 * Give the cell a role by adding its tag; other tags stay as they are.
 * A cell may carry several roles; adding one it already has changes nothing.
 */
export function addRole(model: ICellModel, role: Role): boolean {
  const tags = getTags(model);
  if (tags.some(tag => tag.trim().toLowerCase() === role)) {
    return false;
  }
  writeTags(model, [...tags, role]);
  return true;
}

/** Remove every nb2prod role tag from the cell; tags nb2prod does not read are kept. */
export function removeRoles(model: ICellModel): boolean {
  const tags = getTags(model);
  const kept = tags.filter(tag => roleOfTag(tag) === null);
  if (kept.length === tags.length) {
    return false;
  }
  writeTags(model, kept);
  return true;
}

/** Whether the cell already carries this role. */
export function hasRole(model: ICellModel, role: Role): boolean {
  return getTags(model).some(tag => roleOfTag(tag) === role);
}

/** A `#|` directive line at the top of a code cell that gives the cell a role. */
export interface IDirective {
  text: string; // what follows `#|`, e.g. "export: features"
  line: number; // 1-based line in the cell
  role: Role;
}

/**
 * The role directives of a cell, read as the command line reads them: `#|` comment lines at
 * the top of a code cell (blank lines allowed between them), each naming a role.
 */
export function directives(model: ICellModel): IDirective[] {
  if (model.type !== 'code') {
    return [];
  }
  const found: IDirective[] = [];
  const lines = model.sharedModel.getSource().split('\n');
  for (let index = 0; index < lines.length; index++) {
    const stripped = lines[index].trim();
    if (!stripped) {
      continue;
    }
    if (!stripped.startsWith('#|')) {
      break;
    }
    const text = stripped.slice(2).trim();
    const role = roleOfTag(text);
    if (role !== null) {
      found.push({ text, line: index + 1, role });
    }
  }
  return found;
}

/** Remove the role directive lines of a cell; other lines (and other directives) stay. */
export function removeDirectives(model: ICellModel): number {
  const found = directives(model);
  if (found.length === 0) {
    return 0;
  }
  const drop = new Set(found.map(d => d.line - 1));
  const lines = model.sharedModel.getSource().split('\n');
  model.sharedModel.setSource(lines.filter((_, index) => !drop.has(index)).join('\n'));
  return found.length;
}

/** Whether the cell carries this role, by a tag or by a directive. */
export function hasAnyRole(model: ICellModel, role: Role): boolean {
  return hasRole(model, role) || directives(model).some(d => d.role === role);
}

/** Take one role away from the cell: its tags and its directive lines for that role. */
export function removeRole(model: ICellModel, role: Role): boolean {
  const tags = getTags(model);
  const kept = tags.filter(tag => roleOfTag(tag) !== role);
  let changed = kept.length !== tags.length;
  if (changed) {
    writeTags(model, kept);
  }
  const drop = new Set(directives(model).filter(d => d.role === role).map(d => d.line - 1));
  if (drop.size) {
    const lines = model.sharedModel.getSource().split('\n');
    model.sharedModel.setSource(lines.filter((_, index) => !drop.has(index)).join('\n'));
    changed = true;
  }
  return changed;
}

/** Put the cell's code into module MODULE: the tag `export:MODULE`, replacing other export tags. */
export function setExportModule(model: ICellModel, module: string): void {
  const tags = getTags(model).filter(tag => roleOfTag(tag) !== 'export');
  writeTags(model, [...tags, `export:${module}`]);
}

/** A module name nb2prod accepts for `export: MODULE` (a dotted Python identifier). */
export function isModuleName(text: string): boolean {
  return /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/.test(text);
}
