// A terminal chat on the urql snippet (examples/clients/urql.ts), to try a client by hand:
//   PARLEY_TOKEN=<a login's token> PARLEY_GROUP=<a group's id> npm run -s example:chat
// (PARLEY_URL: http://localhost:4000/graphql unless set). Prints the group's newest page, then each
// message as it comes, once, across the server's restarts; each line typed is sent; Ctrl-D leaves.
import { createInterface } from 'node:readline';
import { joinChat } from './clients/urql';

async function main(): Promise<void> {
  const { PARLEY_URL = 'http://localhost:4000/graphql', PARLEY_TOKEN: token, PARLEY_GROUP: groupId } = process.env;
  if (!token || !groupId) {
    console.error('Set PARLEY_TOKEN (the token a login or signup answers) and PARLEY_GROUP (a group id: the lobby\'s from { groups { edges { node { id isLobby } } } }).');
    process.exit(2);
  }
  const chat = await joinChat({ url: PARLEY_URL, token, groupId, onMessage: (m) => console.log(`${m.sender.username}: ${m.content ?? '(deleted)'}`) });
  const lines = createInterface({ input: process.stdin });
  const sending: Promise<unknown>[] = [];
  lines.on('line', (line) => {
    if (line.trim()) sending.push(chat.send(line).catch((e: Error) => console.error(`not sent: ${e.message}`)));
  });
  lines.once('close', () => void Promise.all(sending).then(() => chat.close()).then(() => process.exit(0)));
}

void main().catch((e: Error) => {
  console.error(e.message);
  process.exit(1);
});
