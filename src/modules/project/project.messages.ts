/**
 * The inbox texts, one function per reader of each action. Users appear as '@username' and
 * titles in single quotes, exactly as clients show them.
 */
/** A user as the texts name them. */
export const as = (username: string) => `'@${username}'`;
/**
 * An account that leaves by its deletion: named as it was known, and said to be deleted, as its
 * username is free again at once and another account may hold it by the time the entry is read
 * (an outside probe read "'@dt1' left…" with @dt1 a newcomer's).
 */
export const gone = (username: string) => `${as(username)} deleted their account and`;

export const projectTexts = {
  addedYou: (title: string) => `You were added to the project '${title}'.`,
  added: (target: string, title: string) => `The new participant '@${target}' was added to the project '${title}'.`,
  deleted: (title: string, actor: string) => `The project '${title}' was removed by '@${actor}'.`,
  deletedYou: (title: string) => `You deleted the project '${title}'.`,
  renamed: (previous: string, title: string) => `The project '${previous}' was renamed to '${title}'.`,
  /** `who`: `'@name'` (as `as` writes it), or a deleted account's words (`gone`). */
  left: (who: string, title: string) => `${who} left the project '${title}'.`,
  leftItToYou: (who: string, title: string) => `${who} left the project '${title}'; you are its owner now.`,
  leftItTo: (who: string, title: string, heir: string) => `${who} left the project '${title}'; '@${heir}' is its owner now.`,
  leftYou: (title: string) => `You left the project '${title}'.`,
  leftYouTo: (title: string, heir: string) => `You left the project '${title}'; '@${heir}' is its owner now.`,
  leftYouLast: (title: string) => `You left the project '${title}'; no one else was in it, so it was deleted.`,
  designatedYou: (title: string) => `You were designated coach in the project '${title}'.`,
  designated: (target: string, title: string) => `'@${target}' was designated coach in the project '${title}'.`,
  withdrawnYou: (title: string) => `You were withdrawn from coach in the project '${title}'.`,
  withdrawn: (target: string, title: string) => `'@${target}' was withdrawn from coach and is a participant of the project '${title}'.`,
  removedYou: (title: string) => `You were removed from the project '${title}'.`,
  removed: (target: string, title: string) => `'@${target}' was removed from the project '${title}'.`,
};
