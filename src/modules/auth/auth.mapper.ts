import { toUserType } from '../user/user.mapper';
import type { AuthResult } from './auth.service';
import type { AuthPayload } from './auth.types';

export function toAuthPayload(r: AuthResult): AuthPayload {
  return { token: r.token, user: toUserType(r.user), expiresAt: r.expiresAt };
}
