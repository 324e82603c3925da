import { randomUUID } from 'node:crypto';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { Viewer } from '../modules/auth/auth.viewer';
import { ByteBudget, type Context } from '../modules/context';
import { createLoaders, type Loaders } from '../modules/loaders';
import type { Services } from '../modules/services';
import type { Logger } from '../shared/logger';

/**
 * The context of one HTTP operation. `em`, the loaders and the request's child logger are made on
 * first use, by getters on the prototype: Apollo copies the context's own properties into a new
 * object per request (Object.assign), which would call getters defined on the object itself and
 * fork an EntityManager, build loaders and a child logger for `{ __typename }` too.
 */
export class RequestContext implements Context {
  private forked: EntityManager | undefined = undefined;
  private loaded: Loaders | undefined = undefined;
  private child: Logger | undefined = undefined;
  private budget: ByteBudget | undefined = undefined;

  constructor(
    readonly services: Services,
    readonly viewer: Viewer | null,
    readonly ip: string,
    readonly requestId: string,
    /** The public origin links are made for (attachment URLs). */
    readonly origin?: string,
    readonly userAgent: string | null = null,
  ) {}

  get em(): EntityManager {
    return (this.forked ??= this.services.orm.em.fork() as EntityManager);
  }

  get loaders(): Loaders {
    return (this.loaded ??= createLoaders(this.em, this.services, this.viewer?.userId ?? null));
  }

  freshLoaders(): void {
    this.loaded = undefined;
  }

  get logger(): Logger {
    return (this.child ??= this.services.logger.child({ requestId: this.requestId }));
  }

  get attachmentBudget(): ByteBudget {
    return (this.budget ??= new ByteBudget(this.services.env.ATTACHMENT_MAX_BYTES_PER_RESPONSE));
  }
}

/**
 * A context on a WebSocket. For a connection's subscriptions (`perEvent`) it lives as long as the
 * socket, so it holds only the viewer and address, and every read of `em` or `loaders` is a fresh
 * one (each event is executed with its own, nothing cached from an earlier one). For a query or
 * mutation over the socket, `em` and the loaders are made once on first use, as over HTTP. Either
 * way the request id and logger are made only when something logs: a heartbeat logs nothing.
 */
export class SocketContext implements Context {
  private id: string | undefined;
  private forked: EntityManager | undefined;
  private loaded: Loaders | undefined;
  private budget: ByteBudget | undefined;

  constructor(
    readonly services: Services,
    readonly viewer: Viewer,
    readonly ip: string,
    private readonly perEvent: boolean,
    readonly origin?: string,
  ) {}

  get em(): EntityManager {
    if (this.perEvent) return this.services.orm.em.fork() as EntityManager;
    return (this.forked ??= this.services.orm.em.fork() as EntityManager);
  }

  get loaders(): Loaders {
    if (this.perEvent) return createLoaders(this.em, this.services, this.viewer.userId);
    return (this.loaded ??= createLoaders(this.em, this.services, this.viewer.userId));
  }

  freshLoaders(): void {
    this.loaded = undefined;
  }

  /** Per event for subscriptions: an event carries one message, so its budget is never shared with another event's. */
  get attachmentBudget(): ByteBudget {
    if (this.perEvent) return new ByteBudget(this.services.env.ATTACHMENT_MAX_BYTES_PER_RESPONSE);
    return (this.budget ??= new ByteBudget(this.services.env.ATTACHMENT_MAX_BYTES_PER_RESPONSE));
  }

  get requestId(): string {
    return (this.id ??= randomUUID());
  }

  get logger(): Logger {
    return this.services.logger.child({ requestId: this.requestId });
  }
}
