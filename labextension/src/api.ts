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

async function post<T>(endpoint: string, path: string): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'nb2prod', endpoint);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(
      url,
      { method: 'POST', body: JSON.stringify({ path }) },
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

export function requestBuild(path: string): Promise<IBuildReply> {
  return post<IBuildReply>('build', path);
}

export function requestInspect(path: string): Promise<IInspectReply> {
  return post<IInspectReply>('inspect', path);
}
