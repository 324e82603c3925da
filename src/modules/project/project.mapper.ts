import type { ProjectActionEntryPayload } from '../../shared/pubsub/topics';
import type { ProjectActionKind } from './project.entity';
import type { ActionRow, NewAction, ProjectRow } from './project.repository';
import type { ProjectActionType, ProjectMemberShape, ProjectType } from './project.types';

export function toProjectType(p: ProjectRow, members: ProjectMemberShape[]): ProjectType {
  return { id: p.id, title: p.title, createdAt: new Date(p.created_at), ownerId: p.owner_id, members };
}

export function entryToActionType(e: ProjectActionEntryPayload): ProjectActionType {
  return {
    id: e.id,
    kind: e.kind as ProjectActionKind,
    message: e.message,
    projectId: e.projectId,
    previousTitle: e.previousTitle,
    createdAt: new Date(e.createdAt),
    actorId: e.actorId,
    targetId: e.targetId,
  };
}

export function rowToActionType(r: ActionRow): ProjectActionType {
  return {
    id: r.id,
    kind: r.kind,
    message: r.message,
    projectId: r.project_id,
    previousTitle: r.previous_title,
    createdAt: new Date(r.created_at),
    actorId: r.actor_id,
    targetId: r.target_id,
  };
}

/** What is published for a new inbox entry: the same fields, the date as ISO. */
export function toActionEntryPayload(a: NewAction): ProjectActionEntryPayload {
  return { ...a, createdAt: a.createdAt.toISOString() };
}
