import type { MigrationObject } from '@mikro-orm/core';
import { Migration20261122141348_Initial } from './Migration20261122141348_Initial';
import { Migration20261123053316_ServerSecrets } from './Migration20261123053316_ServerSecrets';
import { Migration20261123061800_Conversations } from './Migration20261123061800_Conversations';
import { Migration20261123081226_ConversationHeads } from './Migration20261123081226_ConversationHeads';
import { Migration20261123120000_ConversationSort } from './Migration20261123120000_ConversationSort';
import { Migration20261123160000_GroupJoinMs } from './Migration20261123160000_GroupJoinMs';
import { Migration20261123190000_MessageVersion } from './Migration20261123190000_MessageVersion';
import { Migration20261123193000_MessagePosition } from './Migration20261123193000_MessagePosition';
import { Migration20261124070000_SearchAndPins } from './Migration20261124070000_SearchAndPins';
import { Migration20261124073000_Notifications } from './Migration20261124073000_Notifications';
import { Migration20261124153402_BlockAndMute } from './Migration20261124153402_BlockAndMute';
import { Migration20261124153351_GroupRoles } from './Migration20261124153351_GroupRoles';
import { Migration20261124153416_PresenceVisibility } from './Migration20261124153416_PresenceVisibility';
import { Migration20261124153442_ThreadsAndMentions } from './Migration20261124153442_ThreadsAndMentions';
import { Migration20261126090000_ClosedHeads } from './Migration20261126090000_ClosedHeads';
import { Migration20261126100000_WebhookPreviewMessage } from './Migration20261126100000_WebhookPreviewMessage';
import { Migration20261126120000_SearchWords } from './Migration20261126120000_SearchWords';
import { Migration20261126150000_SearchRuns } from './Migration20261126150000_SearchRuns';
import { Migration20261126180000_ProjectActionPosition } from './Migration20261126180000_ProjectActionPosition';
import { Migration20261127010000_DirectReadMarkers } from './Migration20261127010000_DirectReadMarkers';
import { Migration20261127050000_WebhookCoveredMessages } from './Migration20261127050000_WebhookCoveredMessages';

/** Listed explicitly so that the same list runs from src (tests) and dist (production). Append new ones. */
export const migrationsList: MigrationObject[] = [
  { name: 'Migration20261122141348_Initial', class: Migration20261122141348_Initial },
  { name: 'Migration20261123053316_ServerSecrets', class: Migration20261123053316_ServerSecrets },
  { name: 'Migration20261123061800_Conversations', class: Migration20261123061800_Conversations },
  { name: 'Migration20261123081226_ConversationHeads', class: Migration20261123081226_ConversationHeads },
  { name: 'Migration20261123120000_ConversationSort', class: Migration20261123120000_ConversationSort },
  { name: 'Migration20261123160000_GroupJoinMs', class: Migration20261123160000_GroupJoinMs },
  { name: 'Migration20261123190000_MessageVersion', class: Migration20261123190000_MessageVersion },
  { name: 'Migration20261123193000_MessagePosition', class: Migration20261123193000_MessagePosition },
  { name: 'Migration20261124070000_SearchAndPins', class: Migration20261124070000_SearchAndPins },
  { name: 'Migration20261124073000_Notifications', class: Migration20261124073000_Notifications },
  { name: 'Migration20261124153351_GroupRoles', class: Migration20261124153351_GroupRoles },
  { name: 'Migration20261124153402_BlockAndMute', class: Migration20261124153402_BlockAndMute },
  { name: 'Migration20261124153416_PresenceVisibility', class: Migration20261124153416_PresenceVisibility },
  { name: 'Migration20261124153442_ThreadsAndMentions', class: Migration20261124153442_ThreadsAndMentions },
  { name: 'Migration20261126090000_ClosedHeads', class: Migration20261126090000_ClosedHeads },
  { name: 'Migration20261126100000_WebhookPreviewMessage', class: Migration20261126100000_WebhookPreviewMessage },
  { name: 'Migration20261126120000_SearchWords', class: Migration20261126120000_SearchWords },
  { name: 'Migration20261126150000_SearchRuns', class: Migration20261126150000_SearchRuns },
  { name: 'Migration20261126180000_ProjectActionPosition', class: Migration20261126180000_ProjectActionPosition },
  { name: 'Migration20261127010000_DirectReadMarkers', class: Migration20261127010000_DirectReadMarkers },
  { name: 'Migration20261127050000_WebhookCoveredMessages', class: Migration20261127050000_WebhookCoveredMessages },
];
