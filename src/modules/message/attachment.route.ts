import type { IncomingMessage, ServerResponse } from 'node:http';
import type { EntityManager, MikroORM } from '@mikro-orm/postgresql';
import { bearerToken, sendGraphQLError } from '../../core/http';
import { NotFoundError } from '../../shared/errors';
import { normalizeId } from '../../shared/validation';
import type { AuthService } from '../auth/auth.service';
import { invalidTokenError } from '../auth/auth.tokens';
import type { AttachmentLinks } from './attachment.links';
import type { MessageService } from './message.service';

export interface AttachmentRouteDeps {
  orm: MikroORM;
  auth: AuthService;
  messages: MessageService;
  attachmentLinks: AttachmentLinks;
}

/**
 * GET (and HEAD) /attachments/:id: the stored bytes, always as a download. With `expires` and `signature`
 * (the signed link of Attachment.url) to anyone holding a valid, unexpired link; without them,
 * only to a member of the conversation with their bearer token.
 * @returns a handler that answers a request for this route (its promise settles when answered) and returns null for any other
 */
export function attachmentRoute(deps: AttachmentRouteDeps) {
  return (req: IncomingMessage, res: ServerResponse, path: string): Promise<void> | null => {
    const match = /^\/attachments\/([^/]+)$/.exec(path);
    if (!match) return null;
    // HEAD as GET: Node's response leaves the body out. Nothing else is served here.
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      sendGraphQLError(res, 405, 'BAD_USER_INPUT', 'An attachment is read with GET (or HEAD).');
      return Promise.resolve();
    }
    let id: string;
    try {
      id = normalizeId(decodeURIComponent(match[1]));
    } catch {
      sendGraphQLError(res, 404, 'NOT_FOUND', 'Attachment not found.'); // malformed escapes name no attachment, answered as an unknown id is
      return Promise.resolve();
    }
    return serveAttachment(deps, req, res, id, new URL(req.url ?? '/', 'http://localhost').searchParams);
  };
}

async function serveAttachment(deps: AttachmentRouteDeps, req: IncomingMessage, res: ServerResponse, id: string, query: URLSearchParams): Promise<void> {
  const em = deps.orm.em.fork() as EntityManager;
  const notFound = () => sendGraphQLError(res, 404, 'NOT_FOUND', 'Attachment not found.');
  let file;
  let cache = 'private, no-store';
  if (query.has('signature') || query.has('expires')) {
    // A link for another attachment, altered or expired names nothing: 404 as for an unknown id.
    const expires = query.get('expires');
    if (!deps.attachmentLinks.verify(id, expires, query.get('signature'))) return notFound();
    file = await deps.messages.attachmentData(em, id);
    cache = `private, max-age=${Math.max(0, Number(expires) - Math.ceil(Date.now() / 1000))}`;
  } else {
    const token = bearerToken(req.headers.authorization);
    const viewer = token ? await deps.auth.authenticate(token) : null;
    // A token sent and refused is told so, not asked for (an outside probe).
    if (!viewer) return sendGraphQLError(res, 401, 'UNAUTHENTICATED', token ? invalidTokenError().message : 'Send your bearer token in the Authorization header, or use the signed link of Attachment.url.');
    try {
      file = await deps.messages.attachment(em, viewer.userId, id);
    } catch (e) {
      if (e instanceof NotFoundError) return notFound();
      throw e;
    }
  }
  if (!file) return notFound();
  res.writeHead(200, {
    // A text file was checked to be UTF-8 (files stored before carry the parameter already).
    'content-type': file.mimeType === 'text/plain' ? 'text/plain; charset=utf-8' : file.mimeType,
    'content-length': file.data.length,
    'content-disposition': `attachment; filename="${file.fileName.replace(/[^\x20-\x7e]|"/gu, '_')}"; filename*=UTF-8''${rfc8187(file.fileName)}`,
    'x-content-type-options': 'nosniff',
    'cache-control': cache,
  });
  res.end(file.data);
}

/** A header parameter's value as RFC 8187 writes it: encodeURIComponent leaves ' ( ) * as they are, which its attr-char does not allow. */
function rfc8187(value: string): string {
  return encodeURIComponent(value).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}
