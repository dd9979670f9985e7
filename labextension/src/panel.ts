/**
 * The nb2prod side panel: for the current notebook, its build state, findings, parameters and a
 * form to train with overrides, the training job's progress, the runs of its store (sortable by
 * a metric, diff of two, promote and roll back with a confirmation naming both runs) and the
 * alias history. Everything comes from the server extension; nothing is kept only in memory.
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { NotebookPanel } from '@jupyterlab/notebook';
import { Widget } from '@lumino/widgets';

import {
  IFinding,
  IInspectReply,
  IJobReply,
  IRunSummary,
  IRunsReply,
  cancelJob,
  diffRuns,
  getJob,
  listRuns,
  promoteRun,
  requestCheck,
  rollbackAlias,
  startTraining
} from './api';
import { describeLocation, goToCell } from './decorations';
import { ROLES, Role, addRole } from './roles';

/** The settings the panel reads (JupyterLab settings registry, plugin nb2prod:plugin). */
export interface IPanelSettings {
  storeFolder: string;
  defaultAlias: string;
  engine: string;
}

/** A parameter as inspect reports it. */
interface IParameter {
  name: string;
  type: string;
  default: unknown;
  help: string | null;
  nullable: boolean;
  cell: number;
  line: number;
}

export interface IPanelHost {
  serverPath(panel: NotebookPanel): string;
  settings(): IPanelSettings;
  /** Inspect the notebook and draw its findings; null when a newer inspect superseded it. */
  inspect(panel: NotebookPanel): Promise<IInspectReply | null>;
}

const POLL_MS = 1000;

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className = '',
  text = ''
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text) {
    node.textContent = text;
  }
  return node;
}

function button(label: string, className: string, onClick: () => void): HTMLButtonElement {
  const node = el('button', `jp-nb2prod-button ${className}`, label);
  node.type = 'button';
  node.addEventListener('click', onClick);
  return node;
}

function formatValue(value: unknown): string {
  if (typeof value === 'number') {
    return Number.isInteger(value) ? String(value) : value.toPrecision(4);
  }
  return JSON.stringify(value);
}

/** A suggested role from a finding's fix ("Tag cell 3 `export` ..."): the cell index and role. */
export function suggestedTag(finding: IFinding): { index: number; role: Role } | null {
  const match = /Tag cell (\d+) `([A-Za-z]+)`/.exec(finding.fix ?? '');
  if (!match) {
    return null;
  }
  const role = match[2].toLowerCase();
  if (!(ROLES as readonly string[]).includes(role)) {
    return null;
  }
  return { index: Number(match[1]) - 1, role: role as Role };
}

/**
 * Check a form value against the parameter's declared type, with the rules of `nb2prod train -p`:
 * the value to send, or a sentence saying what is wrong.
 */
export function parseParameter(parameter: IParameter, text: string): { value?: unknown; error?: string } {
  const trimmed = text.trim();
  const expects = (what: string) => ({ error: `${parameter.name} expects ${what}.` });
  if (parameter.nullable && ['null', 'none', '~'].includes(trimmed.toLowerCase()) && parameter.type !== 'str') {
    return { value: null };
  }
  switch (parameter.type) {
    case 'int':
      return /^[+-]?\d+$/.test(trimmed) ? { value: Number(trimmed) } : expects('an integer');
    case 'float': {
      const value = Number(trimmed);
      return trimmed !== '' && Number.isFinite(value) ? { value } : expects('a number');
    }
    case 'bool':
      if (['true', 'yes', '1', 'on'].includes(trimmed.toLowerCase())) {
        return { value: true };
      }
      if (['false', 'no', '0', 'off'].includes(trimmed.toLowerCase())) {
        return { value: false };
      }
      return expects('true or false');
    case 'str':
      return { value: text };
    case 'list':
    case 'dict':
      try {
        const value = JSON.parse(trimmed);
        const ok = parameter.type === 'list' ? Array.isArray(value) : value !== null && typeof value === 'object' && !Array.isArray(value);
        return ok ? { value } : expects(parameter.type === 'list' ? 'a JSON list' : 'a JSON object');
      } catch {
        return expects(parameter.type === 'list' ? 'a JSON list' : 'a JSON object');
      }
    default:
      return { value: text };
  }
}

export class Nb2prodSidePanel extends Widget {
  constructor(host: IPanelHost) {
    super();
    this._host = host;
    this.id = 'nb2prod-side-panel';
    this.addClass('jp-nb2prod-panel');
    this.title.caption = 'nb2prod: build, train, promote';
    this.node.tabIndex = 0;
    this._render();
  }

  /** The notebook the panel is about (the current notebook), or null. */
  get notebook(): NotebookPanel | null {
    return this._notebook;
  }

  setNotebook(panel: NotebookPanel | null): void {
    if (panel === this._notebook) {
      return;
    }
    this._notebook = panel;
    this._job = null;
    this._selected = [];
    this._diff = null;
    this._runs = null;
    this._check = null;
    this._findings = [];
    this._parameters = [];
    this._values = {};
    this._render();
    void this.refresh();
  }

  /** Re-read everything from the server: build state, findings, parameters, runs. */
  async refresh(): Promise<void> {
    const panel = this._notebook;
    if (!panel) {
      return;
    }
    await panel.context.ready;
    const path = this._host.serverPath(panel);
    const generation = ++this._generation;
    const [check, inspect] = await Promise.allSettled([requestCheck(path), this._host.inspect(panel)]);
    if (generation !== this._generation || panel !== this._notebook) {
      return;
    }
    this._check =
      check.status === 'fulfilled'
        ? {
            state: check.value.result
              ? check.value.result.stale
                ? check.value.findings.some(f => f.severity === 'error')
                  ? 'errors'
                  : 'stale'
                : 'fresh'
              : 'errors',
            reasons: check.value.result?.reasons ?? (check.value.error ? [check.value.error.message] : [])
          }
        : { state: 'unknown', reasons: [String(check.reason?.message ?? check.reason)] };
    if (inspect.status === 'fulfilled' && inspect.value !== null) {
      this._takeInspection(inspect.value);
    }
    await this._loadRuns(false);
    this._render();
  }

  /** The findings and parameters of an inspect of `panel` (drawn when it is the panel's notebook). */
  showInspection(panel: NotebookPanel, reply: IInspectReply): void {
    if (panel !== this._notebook) {
      return;
    }
    this._takeInspection(reply);
    this._render();
  }

  private _takeInspection(reply: IInspectReply): void {
    this._findings = reply.findings;
    const params = (reply.result?.parameters as IParameter[] | undefined) ?? [];
    this._parameters = params;
    for (const p of params) {
      if (!(p.name in this._values)) {
        this._values[p.name] = typeof p.default === 'string' ? p.default : JSON.stringify(p.default);
      }
    }
  }

  private async _loadRuns(render = true): Promise<void> {
    const panel = this._notebook;
    if (!panel) {
      return;
    }
    try {
      this._runs = await listRuns(this._host.serverPath(panel), this._storeOptions());
      this._runsError = null;
    } catch (error) {
      this._runs = null;
      this._runsError = error instanceof Error ? error.message : String(error);
    }
    if (render) {
      this._render();
    }
  }

  private _storeOptions(): { store?: string } {
    const store = this._host.settings().storeFolder.trim();
    return store ? { store } : {};
  }

  // --- training ------------------------------------------------------------------------------

  private _overrides(): { params: { [name: string]: unknown }; errors: string[] } {
    const params: { [name: string]: unknown } = {};
    const errors: string[] = [];
    for (const p of this._parameters) {
      const text = this._values[p.name] ?? '';
      const parsed = parseParameter(p, text);
      if (parsed.error) {
        errors.push(parsed.error);
        continue;
      }
      if (JSON.stringify(parsed.value) !== JSON.stringify(p.default)) {
        params[p.name] = parsed.value;
      }
    }
    return { params, errors };
  }

  private async _train(): Promise<void> {
    const panel = this._notebook;
    if (!panel || (this._job && this._job.state === 'running')) {
      return;
    }
    const { params, errors } = this._overrides();
    if (errors.length) {
      this._trainError = errors.join(' ');
      this._render();
      return;
    }
    if (panel.context.model.dirty && !panel.context.model.readOnly) {
      await panel.context.save();
    }
    this._trainError = null;
    this._job = null;
    this._starting = true;
    this._render();
    try {
      const { job } = await startTraining(
        this._host.serverPath(panel),
        params,
        this._host.settings().engine,
        this._storeOptions()
      );
      this._job = await getJob(job);
    } catch (error) {
      this._trainError = error instanceof Error ? error.message : String(error);
    } finally {
      this._starting = false;
    }
    this._render();
    this._poll(panel);
  }

  private _poll(panel: NotebookPanel): void {
    const job = this._job;
    if (!job || job.state !== 'running') {
      return;
    }
    window.setTimeout(async () => {
      if (panel !== this._notebook || this._job?.job !== job.job) {
        return;
      }
      try {
        this._job = await getJob(job.job);
      } catch (error) {
        this._trainError = error instanceof Error ? error.message : String(error);
        this._render();
        return;
      }
      if (this._job.state !== 'running') {
        await this.refresh(); // training builds first: the build state changes too
        return;
      }
      this._render();
      this._poll(panel);
    }, POLL_MS);
  }

  private async _cancel(): Promise<void> {
    if (!this._job) {
      return;
    }
    try {
      this._job = await cancelJob(this._job.job);
    } catch (error) {
      this._trainError = error instanceof Error ? error.message : String(error);
    }
    await this._loadRuns(false);
    this._render();
  }

  // --- runs ------------------------------------------------------------------------------------

  private async _promote(run: IRunSummary): Promise<void> {
    const panel = this._notebook;
    if (!panel || !this._runs) {
      return;
    }
    const alias = this._host.settings().defaultAlias || 'production';
    const current = this._runs.aliases.find(a => a.alias === alias)?.run_id ?? null;
    const body = current
      ? `Point ${alias} from run ${current} to run ${run.run_id}?`
      : `Point ${alias} (new) at run ${run.run_id}?`;
    const answer = await showDialog({
      title: `Promote to ${alias}`,
      body,
      buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Promote' })]
    });
    if (!answer.button.accept) {
      return;
    }
    await this._change(() => promoteRun(this._host.serverPath(panel), run.run_id, alias, this._storeOptions()));
  }

  private async _rollback(): Promise<void> {
    const panel = this._notebook;
    if (!panel || !this._runs) {
      return;
    }
    const alias = this._host.settings().defaultAlias || 'production';
    const state = this._runs.aliases.find(a => a.alias === alias);
    if (!state || state.previous.length === 0) {
      return;
    }
    const target = state.previous[state.previous.length - 1];
    const answer = await showDialog({
      title: `Roll back ${alias}`,
      body: `Roll ${alias} back from run ${state.run_id} to run ${target}?`,
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Roll back' })]
    });
    if (!answer.button.accept) {
      return;
    }
    await this._change(() => rollbackAlias(this._host.serverPath(panel), alias, this._storeOptions()));
  }

  private async _change(action: () => Promise<unknown>): Promise<void> {
    try {
      await action();
      this._runsError = null;
    } catch (error) {
      this._runsError = error instanceof Error ? error.message : String(error);
    }
    await this._loadRuns(false);
    this._render();
  }

  private async _showDiff(): Promise<void> {
    const panel = this._notebook;
    if (!panel || this._selected.length !== 2) {
      return;
    }
    try {
      const reply = await diffRuns(this._host.serverPath(panel), this._selected[0], this._selected[1], this._storeOptions());
      this._diff = reply.diff.text;
    } catch (error) {
      this._diff = error instanceof Error ? error.message : String(error);
    }
    this._render();
  }

  // --- drawing ---------------------------------------------------------------------------------

  private _render(): void {
    const root = this.node;
    root.replaceChildren();
    const header = el('div', 'jp-nb2prod-panel-header');
    header.appendChild(el('h2', 'jp-nb2prod-panel-title', 'nb2prod'));
    const panel = this._notebook;
    if (!panel) {
      root.appendChild(header);
      root.appendChild(el('p', 'jp-nb2prod-panel-empty', 'Open a notebook to build, train and promote it.'));
      return;
    }
    header.appendChild(button('Refresh', 'jp-nb2prod-refresh', () => void this.refresh()));
    root.appendChild(header);
    root.appendChild(el('div', 'jp-nb2prod-panel-notebook', this._host.serverPath(panel)));
    root.appendChild(this._renderState());
    root.appendChild(this._renderFindings(panel));
    root.appendChild(this._renderTrain());
    root.appendChild(this._renderRuns());
  }

  private _section(title: string, className: string): HTMLElement {
    const section = el('section', `jp-nb2prod-section ${className}`);
    section.appendChild(el('h3', 'jp-nb2prod-section-title', title));
    return section;
  }

  private _renderState(): HTMLElement {
    const section = this._section('Build', 'jp-nb2prod-state');
    const check = this._check;
    const labels: { [state: string]: string } = {
      fresh: 'Up to date',
      stale: 'Stale',
      errors: 'Has errors',
      unknown: 'Unknown'
    };
    const state = check?.state ?? 'loading';
    const status = el('div', `jp-nb2prod-build-state jp-nb2prod-build-${state}`, labels[state] ?? 'Checking…');
    status.dataset.state = state;
    section.appendChild(status);
    if (check && check.reasons.length) {
      const list = el('ul', 'jp-nb2prod-reasons');
      for (const reason of check.reasons.slice(0, 8)) {
        list.appendChild(el('li', '', reason));
      }
      section.appendChild(list);
    }
    return section;
  }

  private _renderFindings(panel: NotebookPanel): HTMLElement {
    const section = this._section('Findings', 'jp-nb2prod-panel-findings');
    if (this._findings.length === 0) {
      section.appendChild(el('p', 'jp-nb2prod-muted', 'No findings.'));
      return section;
    }
    const list = el('ul', 'jp-nb2prod-findings');
    for (const finding of this._findings) {
      const item = el('li', `jp-nb2prod-finding jp-nb2prod-severity-${finding.severity}`);
      item.appendChild(el('span', 'jp-nb2prod-finding-severity', finding.severity));
      const location = finding.location;
      if (location && location.cell_index !== null) {
        const link = el('a', 'jp-nb2prod-finding-link', describeLocation(location));
        link.href = '#';
        link.addEventListener('click', event => {
          event.preventDefault();
          void goToCell(panel, location.cell_index as number, location.line);
        });
        item.appendChild(link);
      }
      item.appendChild(el('span', 'jp-nb2prod-finding-message', finding.message));
      const tag = suggestedTag(finding);
      if (tag) {
        item.appendChild(
          button(`Tag cell ${tag.index + 1} ${tag.role}`, 'jp-nb2prod-fix', () => {
            const cell = panel.content.widgets[tag.index];
            if (cell) {
              addRole(cell.model, tag.role);
              void panel.context.save();
            }
          })
        );
      }
      list.appendChild(item);
    }
    section.appendChild(list);
    return section;
  }

  private _renderTrain(): HTMLElement {
    const section = this._section('Train', 'jp-nb2prod-train');
    const form = el('div', 'jp-nb2prod-params');
    for (const p of this._parameters) {
      const row = el('label', 'jp-nb2prod-param');
      row.dataset.param = p.name;
      const name = el('span', 'jp-nb2prod-param-name', p.name);
      const type = el('span', 'jp-nb2prod-param-type', p.type);
      const input = el('input', 'jp-nb2prod-param-input');
      input.value = this._values[p.name] ?? '';
      input.name = p.name;
      input.title = p.help ?? '';
      const error = parseParameter(p, input.value).error;
      if (error) {
        input.classList.add('jp-nb2prod-invalid');
      }
      input.addEventListener('input', () => {
        this._values[p.name] = input.value;
        const problem = parseParameter(p, input.value).error;
        input.classList.toggle('jp-nb2prod-invalid', !!problem);
        trainButton.disabled = this._overrides().errors.length > 0;
        message.textContent = problem ?? '';
      });
      row.append(name, type, input);
      if (p.help) {
        row.appendChild(el('span', 'jp-nb2prod-param-help', p.help));
      }
      form.appendChild(row);
    }
    section.appendChild(form);
    const message = el('div', 'jp-nb2prod-error-text', this._trainError ?? '');
    const running = this._starting || this._job?.state === 'running';
    const trainButton = button('Train', 'jp-nb2prod-train-button jp-mod-accept', () => void this._train());
    trainButton.disabled = running || this._overrides().errors.length > 0;
    const actions = el('div', 'jp-nb2prod-actions');
    actions.appendChild(trainButton);
    if (this._job?.state === 'running') {
      actions.appendChild(button('Cancel', 'jp-nb2prod-cancel-button', () => void this._cancel()));
    }
    section.appendChild(actions);
    section.appendChild(message);
    section.appendChild(this._renderJob());
    return section;
  }

  private _renderJob(): HTMLElement {
    const box = el('div', 'jp-nb2prod-job');
    const job = this._job;
    if (this._starting) {
      box.textContent = 'Starting training…';
      return box;
    }
    if (!job) {
      return box;
    }
    box.dataset.state = job.state;
    const elapsed = `${job.elapsed_s.toFixed(1)} s`;
    if (job.state === 'running') {
      const current = job.current;
      let text = `Running (${elapsed})`;
      if (current?.step === 'executing' && current.cell !== null) {
        text = `Running cell ${current.cell + 1}${current.role ? ` (${current.role})` : ''}: ${current.source ?? ''} — ${elapsed}`;
      } else if (current?.step === 'building') {
        text = `Building the package — ${elapsed}`;
      }
      box.appendChild(el('div', 'jp-nb2prod-job-progress', text));
      return box;
    }
    const result = job.result;
    const headline = el('div', `jp-nb2prod-job-result jp-nb2prod-job-${job.state}`);
    headline.textContent =
      job.state === 'succeeded'
        ? `Run ${job.run_id} succeeded in ${elapsed}.`
        : job.state === 'cancelled'
          ? 'Training was cancelled; no run was recorded.'
          : `Training ${result ? `run ${job.run_id} ` : ''}${result?.status ?? job.state}: ${job.message ?? ''}`;
    box.appendChild(headline);
    if (result && result.metrics && Object.keys(result.metrics).length) {
      const metrics = el('div', 'jp-nb2prod-job-metrics');
      metrics.textContent = Object.entries(result.metrics)
        .map(([k, v]) => `${k}=${formatValue(v)}`)
        .join('  ');
      box.appendChild(metrics);
    }
    const failureCell = result?.failure?.cell?.notebook_cell;
    const panel = this._notebook;
    if (panel && typeof failureCell === 'number') {
      const link = el('a', 'jp-nb2prod-finding-link', `Go to cell ${failureCell + 1}`);
      link.href = '#';
      link.addEventListener('click', event => {
        event.preventDefault();
        void goToCell(panel, failureCell, result?.failure?.cell?.line ?? null);
      });
      box.appendChild(link);
    }
    return box;
  }

  private _renderRuns(): HTMLElement {
    const section = this._section('Runs', 'jp-nb2prod-runs');
    if (this._runsError) {
      section.appendChild(el('div', 'jp-nb2prod-error-text', this._runsError));
    }
    const data = this._runs;
    if (!data) {
      return section;
    }
    section.appendChild(el('div', 'jp-nb2prod-muted', `Store: ${data.store ?? '(outside the root)'}`));
    if (data.runs.length === 0) {
      section.appendChild(el('p', 'jp-nb2prod-muted', 'No runs yet.'));
      return section;
    }
    const metricNames = [...new Set(data.runs.flatMap(r => Object.keys(r.metrics)))].sort();
    const runs = this._sortedRuns(data, metricNames);
    const table = el('table', 'jp-nb2prod-runs-table');
    const head = el('tr');
    head.appendChild(el('th', '', ''));
    for (const label of ['Run', 'Status', 'Started']) {
      head.appendChild(el('th', '', label));
    }
    for (const metric of metricNames) {
      const th = el('th', 'jp-nb2prod-sortable', metric + (this._sort?.metric === metric ? (this._sort.descending ? ' ▼' : ' ▲') : ''));
      th.dataset.metric = metric;
      th.title = `Sort by ${metric}`;
      th.addEventListener('click', () => {
        this._sort = { metric, descending: this._sort?.metric === metric ? !this._sort.descending : true };
        this._render();
      });
      head.appendChild(th);
    }
    head.appendChild(el('th', '', 'Aliases'));
    head.appendChild(el('th', '', ''));
    table.appendChild(head);
    for (const run of runs) {
      const row = el('tr', 'jp-nb2prod-run-row');
      row.dataset.runId = run.run_id;
      const pick = el('input');
      pick.type = 'checkbox';
      pick.className = 'jp-nb2prod-run-select';
      pick.checked = this._selected.includes(run.run_id);
      pick.addEventListener('change', () => {
        this._selected = pick.checked
          ? [...this._selected.filter(id => id !== run.run_id), run.run_id].slice(-2)
          : this._selected.filter(id => id !== run.run_id);
        this._render();
      });
      const first = el('td');
      first.appendChild(pick);
      row.appendChild(first);
      row.appendChild(el('td', 'jp-nb2prod-run-id', run.run_id));
      row.appendChild(el('td', `jp-nb2prod-run-status jp-nb2prod-status-${run.status}`, run.status));
      row.appendChild(el('td', '', run.started_at.slice(0, 19).replace('T', ' ')));
      for (const metric of metricNames) {
        const value = run.metrics[metric];
        const td = el('td', 'jp-nb2prod-metric', value === undefined ? '–' : formatValue(value));
        td.dataset.metric = metric;
        row.appendChild(td);
      }
      row.appendChild(el('td', 'jp-nb2prod-run-aliases', run.aliases.join(', ')));
      const actions = el('td');
      if (run.status === 'succeeded') {
        actions.appendChild(button('Promote', 'jp-nb2prod-promote', () => void this._promote(run)));
      }
      row.appendChild(actions);
      table.appendChild(row);
    }
    const scroller = el('div', 'jp-nb2prod-table-scroll');
    scroller.appendChild(table);
    section.appendChild(scroller);

    const tools = el('div', 'jp-nb2prod-actions');
    const diff = button('Diff selected', 'jp-nb2prod-diff-button', () => void this._showDiff());
    diff.disabled = this._selected.length !== 2;
    tools.appendChild(diff);
    const alias = this._host.settings().defaultAlias || 'production';
    const state = data.aliases.find(a => a.alias === alias);
    const rollback = button(`Roll back ${alias}`, 'jp-nb2prod-rollback-button', () => void this._rollback());
    rollback.disabled = !state || state.previous.length === 0;
    tools.appendChild(rollback);
    section.appendChild(tools);
    if (this._diff !== null) {
      section.appendChild(el('pre', 'jp-nb2prod-diff', this._diff));
    }
    const aliases = el('div', 'jp-nb2prod-aliases');
    for (const a of data.aliases) {
      aliases.appendChild(el('div', 'jp-nb2prod-alias', `${a.alias} → ${a.run_id}`));
    }
    section.appendChild(aliases);
    if (data.history.length) {
      section.appendChild(el('h3', 'jp-nb2prod-section-title', 'Alias history'));
      const list = el('ul', 'jp-nb2prod-history');
      for (const change of [...data.history].reverse()) {
        list.appendChild(
          el(
            'li',
            '',
            `${change.when.slice(0, 19).replace('T', ' ')} ${change.who}: ${change.action} ${change.alias} ${change.from ?? '–'} → ${change.to}`
          )
        );
      }
      section.appendChild(list);
    }
    return section;
  }

  private _sortedRuns(data: IRunsReply, metricNames: string[]): IRunSummary[] {
    const runs = [...data.runs].reverse(); // newest first
    const sort = this._sort;
    if (!sort || !metricNames.includes(sort.metric)) {
      return runs;
    }
    const value = (run: IRunSummary) => {
      const v = run.metrics[sort.metric];
      return typeof v === 'number' ? v : Number.NEGATIVE_INFINITY;
    };
    return runs.sort((a, b) => (sort.descending ? value(b) - value(a) : value(a) - value(b)));
  }

  private _host: IPanelHost;
  private _notebook: NotebookPanel | null = null;
  private _generation = 0;
  private _check: { state: string; reasons: string[] } | null = null;
  private _findings: IFinding[] = [];
  private _parameters: IParameter[] = [];
  private _values: { [name: string]: string } = {};
  private _job: IJobReply | null = null;
  private _starting = false;
  private _trainError: string | null = null;
  private _runs: IRunsReply | null = null;
  private _runsError: string | null = null;
  private _selected: string[] = [];
  private _diff: string | null = null;
  private _sort: { metric: string; descending: boolean } | null = null;
}
