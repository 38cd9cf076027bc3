/**
 * Registry authentication challenges (RFC 7235 `WWW-Authenticate`; distribution's token
 * authentication spec, docs/spec/auth/token.md) and the scopes a request asks for.
 */

export interface RegistryAuth {
  username?: string;
  password?: string;
  identityToken?: string;
}

export type Challenge = { scheme: 'basic' } | { scheme: 'bearer'; realm: string; service?: string; scope?: string };
export type Bearer = Extract<Challenge, { scheme: 'bearer' }>;

export const pullScope = (repo: string) => `repository:${repo}:pull`;
export const pushScope = (repo: string) => `repository:${repo}:pull,push`;

/** Parses a `WWW-Authenticate` header: Basic, or Bearer with its realm, service and scope; undefined for anything else. */
export function parseChallenge(header: string | undefined): Challenge | undefined {
  const match = header ? /^\s*([A-Za-z]+)\s*(.*)$/s.exec(header) : null;
  if (!match) return undefined;
  const scheme = match[1].toLowerCase();
  if (scheme === 'basic') return { scheme: 'basic' };
  if (scheme !== 'bearer') return undefined;
  const params: Record<string, string> = {};
  for (const p of match[2].matchAll(/([\w-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))/g)) {
    params[p[1].toLowerCase()] = (p[2] ?? p[3]).replace(/\\(.)/g, '$1');
  }
  if (!params.realm) return undefined;
  return { scheme: 'bearer', realm: params.realm, service: params.service, scope: params.scope };
}
