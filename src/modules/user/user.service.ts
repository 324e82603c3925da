import type { EntityManager } from '@mikro-orm/postgresql';
import { cursorSideOf, decodeCursor, pageRequest, toConnection, type ConnectionShape, type PageArgs } from '../../shared/graphql/connection';
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
  async list(em: EntityManager, args: PageArgs & { search?: string | null }, given?: (name: keyof PageArgs) => boolean): Promise<ConnectionShape<UserType>> {
    const { limit, backward, cursor, cursorField } = pageRequest(args, { def: 20, forward: true, given });
    const from = cursor ? decodeCursor(cursor, cursorField, undefined, 'users') : null;
    const search = cleanSearch(args.search);
    const { rows, total } = await userRepository.search(em, { search, from, backward, limit });
    const cursorSide = cursorSideOf(from, { backward, ascending: true }, async (at, back) => (await userRepository.search(em, { search, from: at, backward: back, limit: 0 })).rows);
    return toConnection(rows, { limit, backward, hasCursor: !!from, cursorSide, totalCount: total, key: (u) => ({ k: u.username.toLowerCase(), id: u.id }), node: toUserType, scope: 'users' });
  }
}
