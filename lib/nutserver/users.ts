/**
 * Users of the NUT server with upsd.users semantics (server/user.c):
 * - `upsmon primary` may LOGIN, claim PRIMARY/MASTER and raise FSD; `upsmon secondary` may LOGIN;
 * - `actions = FSD` lets a user raise FSD without being an upsmon primary;
 * - `instcmds` lists the instant commands a user may run (`all` for every one);
 * - nobody may SET: the server has no writable variables.
 * A wrong password is not detected at PASSWORD, only when a privileged command is used.
 */
import { timingSafeEqual } from 'node:crypto';

export type UpsmonRole = 'primary' | 'secondary' | 'none';

export interface NutUser {
  username: string;
  password: string;
  upsmon: UpsmonRole;
  /** `actions = FSD`. */
  fsd: boolean;
  /** Lower-case instant command names, or `all`. */
  instcmds: string[];
}

export type UserAction = 'LOGIN' | 'MASTER' | 'FSD' | 'SET';

function samePassword(a: string, b: string): boolean {
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  return x.length === y.length && timingSafeEqual(x, y);
}

/** The user whose name and password match, as upsd's user_checkaction finds it. */
function authenticated(users: readonly NutUser[], username: string | undefined, password: string | undefined): NutUser | undefined {
  if (username === undefined || password === undefined) return undefined;
  const u = users.find((x) => x.username === username);
  return u && samePassword(u.password, password) ? u : undefined;
}

export function mayDo(users: readonly NutUser[], username: string | undefined, password: string | undefined, action: UserAction): boolean {
  const u = authenticated(users, username, password);
  if (!u) return false;
  switch (action) {
    case 'LOGIN':
      return u.upsmon === 'primary' || u.upsmon === 'secondary';
    case 'MASTER':
      return u.upsmon === 'primary';
    case 'FSD':
      return u.upsmon === 'primary' || u.fsd;
    case 'SET':
      return false;
  }
}

export function mayRunInstcmd(users: readonly NutUser[], username: string | undefined, password: string | undefined, cmd: string): boolean {
  const u = authenticated(users, username, password);
  if (!u) return false;
  const c = cmd.toLowerCase();
  return u.instcmds.some((x) => x === 'all' || x === c);
}
