/**
 * Calls to the nb2prod server extension (`POST /nb2prod/{build,check,inspect}`).
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** A place in the notebook, as `nb2prod.errors.Location.to_dict()` gives it. */
export interface ILocation {
  notebook: string;
  cell_index: number | null;
  cell_id: string | null;
  role: string | null;
  line: number | null;
}

/** One error or note, as `nb2prod.errors.Finding.to_dict()` gives it. */
export interface IFinding {
  severity: string;
  code: string;
  message: string;
  location: ILocation | null;
  fix: string | null;
  related: ILocation | null;
}

/** What the build endpoint answers. */
export interface IBuildReply {
  ok: boolean;
  path: string;
  /** Present when ok: BuildResult.to_dict(). */
  result?: {
    output_dir: string;
    package: string;
    files: string[];
    notes: IFinding[];
    changed: boolean;
    [key: string]: unknown;
  };
  /** The output folder relative to the server root, when it lies inside it. */
  output_path?: string | null;
  /** Present when not ok. */
  error?: { kind: string; message: string };
  findings: IFinding[];
}

/** What the inspect endpoint answers. */
export interface IInspectReply {
  ok: boolean;
  path: string;
  result?: { [key: string]: unknown };
  error?: { kind: string; message: string };
  findings: IFinding[];
}

/** An HTTP-level failure of the server extension (not a finding in the notebook). */
export class RequestError extends Error {}

async function post<T>(endpoint: string, path: string, extra: { [key: string]: unknown } = {}): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'nb2prod', endpoint);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(
      url,
      { method: 'POST', body: JSON.stringify({ ...extra, path }) },
      settings
    );
  } catch (error) {
    throw new RequestError(`nb2prod server extension unreachable: ${error}`);
  }
  const text = await response.text();
  let data: any = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const message =
      (data && (data.message || data.reason)) || response.statusText || text;
    throw new RequestError(
      `nb2prod ${endpoint} failed (HTTP ${response.status}): ${message}`
    );
  }
  if (data === null) {
    throw new RequestError(`nb2prod ${endpoint} answered something not JSON.`);
  }
  return data as T;
}

export function requestBuild(path: string, force = false): Promise<IBuildReply> {
  return post<IBuildReply>('build', path, force ? { force: true } : {});
}

export function requestInspect(path: string): Promise<IInspectReply> {
  return post<IInspectReply>('inspect', path);
}

// --- runs, training jobs, promote and rollback ------------------------------------------------

/** One run as `GET /nb2prod/runs` lists it. */
export interface IRunSummary {
  run_id: string;
  status: string;
  engine: string;
  started_at: string;
  total_s: number;
  aliases: string[];
  params: { [name: string]: unknown };
  overrides: string[];
  metrics: { [name: string]: unknown };
  model_sha256: string | null;
  failure: {
    type: string;
    message: string;
    describe: string;
    cell: number | null;
    cell_id: string | null;
    role: string | null;
    line: number | null;
  } | null;
}

export interface IAliasState {
  alias: string;
  run_id: string;
  previous: string[];
  updated_at: string;
  updated_by: string;
}

export interface IAliasChange {
  when: string;
  who: string;
  alias: string;
  action: string;
  from: string | null;
  to: string;
}

export interface IRunsReply {
  path: string;
  store: string | null;
  runs: IRunSummary[];
  aliases: IAliasState[];
  history: IAliasChange[];
}

export interface IJobReply {
  job: string;
  path: string;
  state: 'running' | 'succeeded' | 'failed' | 'cancelled' | 'error';
  engine: string;
  params: { [name: string]: unknown };
  elapsed_s: number;
  run_id: string | null;
  current: {
    cell: number | null;
    role: string | null;
    source: string | null;
    run_id: string | null;
    step: string;
  } | null;
  result: {
    run_id: string;
    status: string;
    metrics: { [name: string]: unknown };
    failure: {
      error_type: string;
      message: string;
      cell: { notebook_cell: number | null; line: number | null; role: string | null } | null;
    } | null;
    [key: string]: unknown;
  } | null;
  message: string | null;
}

export interface ICheckReply {
  ok: boolean;
  path: string;
  result?: { stale: boolean; reasons: string[]; output_dir: string; [key: string]: unknown };
  error?: { kind: string; message: string };
  findings: IFinding[];
}

/** Options that every run endpoint takes beside the notebook path. */
export interface IStoreOptions {
  store?: string;
}

async function request<T>(
  method: 'GET' | 'POST' | 'DELETE',
  parts: string[],
  query: { [key: string]: string | undefined } | null,
  body: unknown
): Promise<T> {
  const settings = ServerConnection.makeSettings();
  let url = URLExt.join(settings.baseUrl, 'nb2prod', ...parts.map(encodeURIComponent));
  if (query) {
    const search = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) {
      if (value !== undefined && value !== '') {
        search.set(key, value);
      }
    }
    url += `?${search.toString()}`;
  }
  const init: RequestInit = { method };
  if (body !== undefined && body !== null) {
    init.body = JSON.stringify(body);
  }
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new RequestError(`nb2prod server extension unreachable: ${error}`);
  }
  const text = await response.text();
  let data: any = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const message = (data && (data.message || data.reason)) || response.statusText || text;
    throw new RequestError(message);
  }
  if (data === null) {
    throw new RequestError(`nb2prod ${parts[0]} answered something not JSON.`);
  }
  return data as T;
}

export function requestCheck(path: string): Promise<ICheckReply> {
  return request<ICheckReply>('POST', ['check'], null, { path });
}

export function requestInspectResult(path: string): Promise<IInspectReply> {
  return request<IInspectReply>('POST', ['inspect'], null, { path });
}

export function listRuns(path: string, options: IStoreOptions = {}): Promise<IRunsReply> {
  return request<IRunsReply>('GET', ['runs'], { path, store: options.store }, null);
}

export function diffRuns(
  path: string,
  a: string,
  b: string,
  options: IStoreOptions = {}
): Promise<{ diff: { text: string; [key: string]: unknown } }> {
  return request('GET', ['diff'], { path, a, b, store: options.store }, null);
}

export function startTraining(
  path: string,
  params: { [name: string]: unknown },
  engine: string,
  options: IStoreOptions = {}
): Promise<{ job: string }> {
  return request('POST', ['train'], null, { path, params, engine, store: options.store });
}

export function getJob(job: string): Promise<IJobReply> {
  return request<IJobReply>('GET', ['jobs', job], null, null);
}

export function cancelJob(job: string): Promise<IJobReply> {
  return request<IJobReply>('DELETE', ['jobs', job], null, null);
}

export function promoteRun(
  path: string,
  run: string,
  alias: string,
  options: IStoreOptions = {}
): Promise<{ change: IAliasChange }> {
  return request('POST', ['promote'], null, { path, run, alias, store: options.store });
}

export function rollbackAlias(
  path: string,
  alias: string,
  options: IStoreOptions = {}
): Promise<{ change: IAliasChange }> {
  return request('POST', ['rollback'], null, { path, alias, store: options.store });
}
