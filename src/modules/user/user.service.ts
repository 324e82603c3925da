import type { EntityManager } from '@mikro-orm/postgresql';
import { decodeCursor, pageSize, toConnection, type ConnectionShape } from '../../shared/graphql/connection';
import { cleanSearch, isId } from '../../shared/validation';
import type { User } from './user.entity';
import { toUserType } from './user.mapper';
import { userRepository } from './user.repository';
import type { UserType } from './user.types';

/** Looking users up; accounts themselves (signup, profile, deletion) are the auth service's. */
export class UserService {
  /** An account that is not deleted; null for anything else, an id not a UUID included. */
  async find(em: EntityManager, id: string): Promise<User | null> {
    return isId(id) ? userRepository.activeById(em, id) : null;
  }

  /** Accounts by lower(username), id; `search` matches username or display name. */
  async list(em: EntityManager, args: { search?: string | null; first?: number | null; after?: string | null }): Promise<ConnectionShape<UserType>> {
    const limit = pageSize(args.first, 'first', 20);
    const after = args.after ? decodeCursor(args.after, 'after') : null;
    const { rows, total } = await userRepository.search(em, { search: cleanSearch(args.search), after, limit });
    return toConnection(rows, { limit, backward: false, hasCursor: !!after, totalCount: total, key: (u) => ({ k: u.username.toLowerCase(), id: u.id }), node: toUserType });
  }
}
