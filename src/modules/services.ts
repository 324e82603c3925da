import { randomUUID } from 'node:crypto';
import DataLoader from 'dataloader';
import type { EntityManager, MikroORM } from '@mikro-orm/postgresql';
import type { Env } from '../config/env';
import { PasswordLimiter } from './auth/auth.ratelimit';
import { AuthService } from './auth/auth.service';
import { StreamTickets } from './auth/auth.tickets';
import { FriendService } from './friend/friend.service';
import { GroupService } from './group/group.service';
import { ReportService } from './safety/report.service';
import { EventAttachments } from './message/attachment.events';
import { AttachmentLinks } from './message/attachment.links';
import { MessageService } from './message/message.service';
import { ConversationAccess } from './conversation/conversation.access';
import { PinService } from './message/pin.service';
import { NodeService } from './node/node.service';
import { SearchService } from './search/search.service';
import { ThreadService } from './message/thread.service';
import { ConversationService } from './conversation/conversation.service';
import { conversationRepository } from './conversation/conversation.repository';
import { MemberStates } from './conversation/conversation.states';
import { MemoryTypingStore, RedisTypingStore, TypingService } from './conversation/conversation.typing';
import { groupRepository } from './group/group.repository';
import { PresenceService } from './presence/presence.service';
import { MemoryPresenceStore, RedisPresenceStore } from './presence/presence.store';
import { ContactIndex } from './presence/presence.contacts';
import { presenceRepository } from './presence/presence.repository';
import { BlockedTold, presenceFollowsBlocks, presenceStoreChannel, routePresence, watcherKey } from './presence/presence.routing';
import { PresenceVisibility } from './presence/presence.visibility';
import { projectRepository } from './project/project.repository';
import { ProjectService } from './project/project.service';
import { UserService } from './user/user.service';
import type { Logger } from '../shared/logger';
import type { PubSub } from '../shared/pubsub/pubsub';
import { Topic } from '../shared/pubsub/topics';
import { routeConversations } from '../shared/pubsub/hub';
import { directKey, parseKey, scopeChannel } from './conversation/conversation.keys';
import { createRates, type Rates } from '../shared/ratelimit';
import type { RedisConnections } from '../shared/redis';
import { MembershipIndex } from './membership/membership.index';
import { GroupSnapshots } from './group/group.snapshots';
import { ProjectSnapshots } from './project/project.snapshots';
import { NotificationService } from './notification/notification.service';
import { blockRepository } from './safety/block.repository';
import { BlockService } from './safety/block.service';
import { muteRepository } from './safety/mute.repository';
import { MuteService } from './safety/mute.service';
import { SafetyLists } from './safety/safety.lists';

/** How often memberships and block lists are read again while this instance is off Redis (changes made elsewhere can't reach it). */
export const OFF_REDIS_RESYNC_MS = 2000;

/** The application's singletons, wired once per server and shared by HTTP and WebSocket operations. */
export interface Services {
  env: Env;
  logger: Logger;
  orm: MikroORM;
  pubsub: PubSub;
  redis?: RedisConnections;
  instanceId: string;
  memberships: MembershipIndex;
  /** Groups as message events show them, one read shared by the subscribers here (modules/group/group.snapshots.ts). */
  groupSnapshots: GroupSnapshots;
  /** Projects as message events show them, one read shared by the subscribers here (modules/project/project.snapshots.ts). */
  projectSnapshots: ProjectSnapshots;
  presence: PresenceService;
  auth: AuthService;
  users: UserService;
  /** Single-use tickets for SSE URLs (Redis when configured). */
  tickets: StreamTickets;
  friends: FriendService;
  groups: GroupService;
  messages: MessageService;
  /** Pinned messages (modules/message/pin.*). */
  pins: PinService;
  /** Message search (modules/search). */
  search: SearchService;
  /** Threads and mentions as readers see them (modules/message/thread.*, mention.*). */
  threads: ThreadService;
  /** Relay's node(id:): any object by its id, as its own query shows it. */
  nodes: NodeService;
  projects: ProjectService;
  /** Who may see and use which conversation: resolving one, filtering events for a viewer. */
  conversationAccess: ConversationAccess;
  conversations: ConversationService;
  /** Members' read states known here, from which each conversationUpdated receiver's row is derived. */
  memberStates: MemberStates;
  typing: TypingService;
  /** Signs and checks the short-lived links of Attachment.url. */
  attachmentLinks: AttachmentLinks;
  eventAttachments: EventAttachments;
  /** Per-user and per-address rates (Redis when configured). */
  rates: Rates;
  /** Offline notifications: levels, the outbox and its webhook delivery (jobs/webhook.job.ts). */
  notifications: NotificationService;
  /** Block lists and mutes of the users connected here, in memory (modules/safety). */
  safety: SafetyLists;
  /** Blocks (modules/safety/block.*). */
  blocks: BlockService;
  /** Mutes (modules/safety/mute.*). */
  mutes: MuteService;
  /** Reports of messages (modules/safety/report.*). */
  reports: ReportService;
}

export function createServices(deps: { env: Env; logger: Logger; orm: MikroORM; pubsub: PubSub; redis?: RedisConnections }) {
  const { env, logger, orm, pubsub, redis } = deps;
  const instanceId = randomUUID();
  // Sockets connect in bursts (an instance restarts, its clients reconnect): their memberships load
  // together, one query per batch instead of two per socket, so the pool is not exhausted.
  const batched = (load: (em: EntityManager, ids: readonly string[]) => Promise<Map<string, string[]>>) => {
    const loader = new DataLoader<string, string[]>(async (ids) => {
      const found = await load(orm.em.fork() as EntityManager, ids);
      return ids.map((id) => found.get(id) ?? []);
    }, { cache: false, maxBatchSize: 500 });
    return (userId: string) => loader.load(userId);
  };
  const memberships = new MembershipIndex(pubsub, {
    group: batched(groupRepository.groupIdsOfMany),
    project: batched(projectRepository.projectIdsOfMany),
  });
  // Each connecting user's blocks and mutes, a burst of them in two queries.
  const safety = new SafetyLists(pubsub, (() => {
    const loader = new DataLoader<string, { blocked: string[]; mutes: Map<string, number> }>(async (ids) => {
      const em = orm.em.fork() as EntityManager;
      const [blocked, mutes] = await Promise.all([blockRepository.blockedOfMany(em, ids), muteRepository.activeOfMany(em, ids)]);
      return ids.map((id) => ({ blocked: blocked.get(id) ?? [], mutes: mutes.get(id) ?? new Map() }));
    }, { cache: false, maxBatchSize: 500 });
    return (userId: string) => loader.load(userId);
  })());
  // Contacts mode: each connected user's contacts, loaded in batches as sockets connect.
  const contactsOf = (em: EntityManager, ids: readonly string[]) => presenceRepository.contactsOfMany(em, ids, env.PRESENCE_GROUP_MAX);
  const contactsBatched = batched(contactsOf);
  const contacts = env.PRESENCE_VISIBILITY === 'contacts' ? new ContactIndex(async (ids) => new Map(await Promise.all(ids.map(async (id) => [id, await contactsBatched(id)] as const)))) : undefined;
  const visibility = new PresenceVisibility(env.PRESENCE_VISIBILITY, contacts, async (viewerId) => new Set((await contactsOf(orm.em.fork() as EntityManager, [viewerId])).get(viewerId)));
  const presence = new PresenceService({
    store: redis ? new RedisPresenceStore(redis.client, undefined, () => presenceRepository.hiddenUserIds(orm.em.fork() as EntityManager)) : new MemoryPresenceStore(),
    pubsub,
    orm,
    env,
    logger: logger.child({ module: 'presence' }),
    instanceId,
    visibility,
    // The sweep's OFFLINE events go out from the store's own Lua step, unless subscribers use sharded channels.
    storeChannel: redis ? presenceStoreChannel(env.PRESENCE_VISIBILITY, redis.sharded) : undefined,
  });
  const users = new UserService();
  const friends = new FriendService(env, pubsub);
  // Every instance reloads the contacts of the two users it has connected (contacts mode). An ended
  // friendship took their direct conversation's rows, and any mute on them (as a block's does): an
  // instance that held the mute showed it again once they were friends again (an outside probe).
  friends.onFriendshipChanged((a, b, made) => {
    const key = directKey(a, b);
    const unmuted = made ? [] : [a, b].map((userId) => ({ topic: Topic.SafetyChanged, payload: { userId, conversationKey: key, mutedUntil: null } }) as const);
    void pubsub.publishTogetherSafe([{ topic: Topic.ContactsChanged, payload: { userIds: [a, b] } }, ...unmuted]);
  });
  const groups = new GroupService(pubsub, memberships, { lobbyAdmins: env.LOBBY_ADMINS });
  const projects = new ProjectService(pubsub, memberships);
  const conversationAccess = new ConversationAccess({ groups, friends, projects });
  const blocks = new BlockService(pubsub, safety);
  // A user the viewer blocks is hidden from them in every presence view (the filter reads memory).
  visibility.addRule({ hides: (viewerId, subjectId) => safety.hides(viewerId, subjectId), hiddenFrom: (viewerId) => blockRepository.blockedIds(orm.em.fork() as EntityManager, viewerId) });
  friends.guard((em, fromId, toId) => blocks.checkContact(em, fromId, toId));
  groups.guardInvite((em, inviterId, inviteeId) => blocks.checkInvite(em, inviterId, inviteeId));
  // Nor into a project (a blocked user added the blocker, then wrote to them in titles: an outside probe).
  projects.guardAdd((em, adderId, userId) => blocks.checkInvite(em, adderId, userId));
  const mutes = new MuteService({ pubsub, access: conversationAccess, lists: safety });
  const messages = new MessageService({
    pubsub,
    access: conversationAccess,
    env,
    // Files in and files out each take at most a third of the pool: the rest stays for everyone else.
    filesAtOnce: Math.max(1, Math.floor(env.DB_POOL_MAX / 3)),
    // As presence shows them to the sender, a user they block left out (from the database when
    // the sender holds no session here: the visibility rule's block test reads memory only).
    online: async (em, viewerId, groupId, ids) => {
      const seen = await presence.connectedSeenBy(em, viewerId, groupId, ids);
      const blocked = seen.length ? await blocks.blockedAmong(em, viewerId, seen) : new Set<string>();
      return new Set(seen.filter((id) => !blocked.has(id)));
    },
    slowMode: (em, groupId, userId) => groups.slowMode(em, groupId, userId),
    moderates: (em, groupId, userId) => groups.moderates(em, groupId, userId),
    statements: orm.em.fork() as EntityManager,
  });
  const reports = new ReportService({ pubsub, access: conversationAccess, groups, moderators: env.MODERATORS });
  const pins = new PinService({ pubsub, projects, access: conversationAccess });
  const search = new SearchService({ access: conversationAccess });
  const threads = new ThreadService({ messages, pubsub });
  const memberStates = new MemberStates((pairs) => conversationRepository.states(orm.em.fork() as EntityManager, pairs));
  const conversations = new ConversationService({ pubsub, access: conversationAccess, states: memberStates, heard: (viewerId, p) => threads.eventHeard(viewerId, p) });
  blocks.onBlockChanged((em, viewerId, userId) => conversations.blockChanged(em, viewerId, userId));
  friends.onBefriended((em, a, b) => conversations.befriended(em, a, b));
  const nodes = new NodeService({ projects, access: conversationAccess, conversations, reports, blocks });
  const typing = new TypingService({
    store: redis ? new RedisTypingStore(redis.client, instanceId) : new MemoryTypingStore(),
    pubsub,
    access: conversationAccess,
    logger: logger.child({ module: 'typing' }),
    lapseMs: env.TYPING_TIMEOUT * 1000,
    throttleMs: env.TYPING_THROTTLE * 1000,
  });
  messages.onSent((sender, conv) => typing.sent(sender, conv));
  const auth = new AuthService({
    orm,
    pubsub,
    presence,
    env,
    limiter: new PasswordLimiter({
      redis: redis?.client,
      maxPerUserIp: env.LOGIN_MAX_FAILURES_PER_USER_IP,
      maxPerUser: env.LOGIN_MAX_FAILURES_PER_USER,
      maxPerIp: env.LOGIN_MAX_FAILURES_PER_IP,
    }),
    onSignup: (em, user, outbox) => groups.joinLobby(em, user, outbox),
  });
  // In the rename's transaction: the lobby role a name gives changes with it.
  auth.onRenamed((em, userId, from, to, outbox) => groups.renamed(em, userId, from, to, outbox));
  auth.onRetitled((em, userId, title, outbox) => conversations.retitled(em, userId, title, outbox));
  auth.onAccountDeleted((em, userId, outbox) => friends.removeAllOf(em, userId, outbox));
  // Projects before groups: a conversation's sends wait on a leaver's deleted row until the
  // deletion commits, and the groups' statements are the fewer (a project's departure writes
  // every member's inbox).
  auth.onAccountDeleted((em, userId, outbox) => projects.leaveAll(em, userId, outbox));
  auth.onAccountDeleted((em, userId, outbox) => groups.leaveAll(em, userId, outbox));
  // Last: the lobby's row is every signup's (see leaveLobby).
  auth.onAccountDeleted((em, userId, outbox) => groups.leaveLobby(em, userId, outbox));
  auth.onAccountDeleted((em, userId) => conversations.forgetUser(em, userId));

  const notifications = new NotificationService({ orm, presence, env, logger: logger.child({ module: 'notifications' }) });
  friends.onRequested((em, request) => notifications.friendRequested(em, request));
  projects.onActions((em, actions) => notifications.projectActions(em, actions));
  groups.onInvited((em, invite) => notifications.groupInvited(em, invite));

  // A publish lost (its instance died after the commit, Redis was away) is read back before its gap is given up.
  pubsub.fillGapsFrom((q) => messages.stored(orm.em.fork(), q));
  // And what was published while this instance was off Redis, once it is back, with memberships and
  // block lists read again (a removal or a block made meanwhile on another instance was told over
  // Redis too): the three at once, the messages delivered once all are in (lines wait: RECOVERY_WAIT_MS).
  pubsub.resyncOnReconnect(() => Promise.all([memberships.resync(), safety.resync()]));
  pubsub.recoverFrom(async (channels, since) => {
    const [, stored] = await Promise.all([pubsub.resynced, messages.storedOn(orm.em.fork(), channels, since)]);
    return stored;
  });
  // And what this instance publishes while off Redis reaches its sockets in a group or project once
  // their membership there and their block lists are read again (a removal or a block made through
  // another instance meanwhile).
  pubsub.checkLocallyWhileOff(async (channels) => {
    const targets = channels.flatMap((c): { scope: 'group' | 'project'; id: string }[] => {
      const k = parseKey(c);
      return k?.kind === 'group' ? [{ scope: 'group', id: k.groupId }] : k?.kind === 'project' ? [{ scope: 'project', id: k.projectId }] : [];
    });
    const here = new Set(targets.flatMap((t) => [...(memberships.localMembers(t.scope, t.id) ?? [])]));
    await Promise.all([memberships.recheck(targets), safety.resync(here)]);
  });
  // And meanwhile, every few seconds: a user removed, banned or blocked elsewhere during an outage
  // kept getting, here, what was sent through this instance until Redis was back (an outside probe).
  const stopResyncing = pubsub.whileOff(OFF_REDIS_RESYNC_MS, () => Promise.all([memberships.resync(), safety.resync()]));
  routeConversations(pubsub, {
    memberships,
    channelOf: scopeChannel,
    missed: (scope, id, joiners) => messages.catchUp(orm.em.fork(), scope, id, joiners),
    // Their conversations' events no longer come here: what is known of their read states would go stale.
    userDropped: (userId) => memberStates.forget(userId),
  });

  const presenceLogger = logger.child({ module: 'presence' });
  const hides = (viewer: string, subject: string) => safety.hides(viewer, subject);
  const blockedTold = contacts ? new BlockedTold() : undefined;
  const unrouteContacts = contacts ? routePresence({ pubsub, contacts, memberships, presence, orm, groupMax: env.PRESENCE_GROUP_MAX, hides, told: blockedTold!, logger: presenceLogger }) : () => undefined;
  const unfollowBlocks = presenceFollowsBlocks({
    pubsub,
    presence,
    holds: (userId) => safety.holds(userId),
    // Contacts mode routes a viewer's subscriptions by key (routePresence): the argument-less ones and those naming the subject.
    deliver: contacts ? (viewer, subject, p) => pubsub.deliverLocally(Topic.PresenceChanged, [watcherKey(viewer), subject], p) : (_viewer, _subject, p) => pubsub.dispatchHere(Topic.PresenceChanged, p),
    saw: contacts ? (viewer, subject) => contacts.isContact(viewer, subject) : undefined,
    settled: contacts ? (viewer) => contacts.settled(viewer) : undefined,
    told: blockedTold,
    logger: presenceLogger,
  });
  const unroutePresence = () => {
    unrouteContacts();
    unfollowBlocks();
  };

  const tickets = new StreamTickets(redis?.client);
  const rates = createRates(env, redis?.client);
  const attachmentLinks = new AttachmentLinks(env);
  const groupSnapshots = new GroupSnapshots();
  const projectSnapshots = new ProjectSnapshots();
  const services: Services = {
    env,
    logger,
    orm,
    pubsub,
    redis,
    instanceId,
    memberships,
    groupSnapshots,
    projectSnapshots,
    presence,
    auth,
    users,
    tickets,
    friends,
    groups,
    messages,
    pins,
    search,
    threads,
    nodes,
    projects,
    conversationAccess,
    conversations,
    memberStates,
    typing,
    attachmentLinks,
    eventAttachments: new EventAttachments(env, (em, id) => messages.attachmentData(em, id)),
    rates,
    notifications,
    safety,
    blocks,
    mutes,
    reports,
  };
  return {
    services,
    async start() {
      memberships.start();
      groupSnapshots.start(pubsub);
      projectSnapshots.start(pubsub);
      safety.start();
      threads.start();
      conversations.start();
      presence.start();
      auth.start();
      await groups.ensureLobby(orm.em.fork());
      // A listed name no account holds is anyone's to take at signup, with its rights: the operator should know.
      const names = await auth.unheldPrivilegedNames(orm.em.fork() as EntityManager);
      if (names.free.length) logger.warn({ names: names.free }, 'LOBBY_ADMINS/MODERATORS name no account holds: whoever signs up under it first gets its rights');
      if (names.retired.length) logger.warn({ names: names.retired }, 'LOBBY_ADMINS/MODERATORS name given up by its holder: no one can take it again; list another name');
      await attachmentLinks.start(orm.em.fork() as EntityManager);
      await notifications.start();
    },
    async dispose() {
      await typing.dispose();
      conversations.dispose();
      auth.dispose();
      tickets.dispose();
      await presence.dispose();
      unroutePresence?.();
      stopResyncing();
      contacts?.dispose();
      memberships.dispose();
      groupSnapshots.dispose();
      projectSnapshots.dispose();
      safety.dispose();
      threads.dispose();
    },
  };
}
