/**
 * The open conversation's block and mute controls, in its header: "Mute" (until unmuted) and
 * "Unmute" for any conversation, "Block" for a direct one's peer. Kept apart from main.ts, which
 * calls `showSafety` whenever a conversation opens.
 */
import { BlockUserDocument, ConversationMuteDocument, MuteConversationDocument, UnmuteConversationDocument, type ConversationInput } from '../../../generated/client/graphql';
import { request } from './api';
import { button, el, fill, toast } from './ui';

const ID = 'safety-controls';

/** The controls' container, made once, just before the header's Details button. */
function holder(): HTMLElement {
  let h = document.getElementById(ID);
  if (!h) {
    h = el('div', { id: ID, class: 'safety-controls', style: 'display: flex; gap: .4rem' });
    const details = document.getElementById('details-toggle');
    details?.parentElement?.insertBefore(h, details);
  }
  return h;
}

/**
 * Shows the controls for a conversation (`peerId`: a direct one's other user). `isCurrent` tells
 * whether it is still the one open when an answer comes back; `onBlocked` runs after a block
 * (the direct conversation is gone: main.ts leaves it).
 */
export async function showSafety(input: ConversationInput, peerId: string | null, isCurrent: () => boolean, onBlocked: () => void): Promise<void> {
  const h = holder();
  fill(h);
  let mutedUntil: string | null = null;
  try {
    mutedUntil = (await request(ConversationMuteDocument, { conversation: input })).conversation?.mutedUntil ?? null;
  } catch {
    return; // Not a conversation the viewer may use (yet): no controls.
  }
  if (!isCurrent()) return;
  const render = () => {
    const mute = mutedUntil
      ? button('Unmute', async () => {
          mutedUntil = (await request(UnmuteConversationDocument, { conversation: input })).unmuteConversation.mutedUntil ?? null;
          render();
        }, { class: 'ghost', title: 'Notifications are off for this conversation' })
      : button('Mute', async () => {
          mutedUntil = (await request(MuteConversationDocument, { conversation: input })).muteConversation.mutedUntil ?? null;
          render();
        }, { class: 'ghost', title: 'No offline notifications, except when you are mentioned' });
    const block =
      peerId &&
      button('Block', async () => {
        if (!confirm('Block this user? Your friendship ends and you will no longer see their messages, typing or presence.')) return;
        await request(BlockUserDocument, { userId: peerId });
        toast('Blocked.');
        onBlocked();
      }, { class: 'ghost danger' });
    fill(h, mute, block);
  };
  render();
}
