import { DeadlockException, ForeignKeyConstraintViolationException } from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/postgresql';
import { NotFoundError } from '../../shared/errors';
import { isId } from '../../shared/validation';
import { messageRepository } from './message.repository';

/** How many times a write that lost a deadlock with anything but its message's deletion runs. */
const DEADLOCK_ATTEMPTS = 3;

/** A message read back after a write on it is gone (deleted with its group or project meanwhile). */
export class MessageGoneError extends Error {}

/**
 * A write on one message (an edit, a reaction, a pin, a report, a thread's marker) that the
 * deletion of its group or project may cross: the message gone under the write (a foreign key
 * refused, a deadlock with the deletion, or the row read back missing) is NOT_FOUND, as if it had
 * been gone first, not an INTERNAL_SERVER_ERROR (an outside probe saw 4-8 a run). A deadlock with
 * anything else (a deletion that was a victim itself and ran again, say) runs the write again, up to
 * DEADLOCK_ATTEMPTS times: the victim's statement or transaction left nothing.
 */
export async function unlessGone<T>(em: EntityManager, messageId: string, write: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await write();
    } catch (e) {
      if (!(e instanceof ForeignKeyConstraintViolationException || e instanceof DeadlockException || e instanceof MessageGoneError)) throw e;
      // Asked once the deletion that crossed the write has ended: before, the message still reads as there.
      if (!isId(messageId) || !(await messageRepository.settledExists(em, messageId))) throw new NotFoundError('Message');
      // A deletion that was itself a deadlock's victim runs again, and may meet this write again.
      if (!(e instanceof DeadlockException) || attempt >= DEADLOCK_ATTEMPTS) throw e;
    }
  }
}
