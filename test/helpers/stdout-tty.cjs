// Preloaded (NODE_OPTIONS=--require) into a spawned Parley: its standard output reads as a terminal,
// as `npm start` run by a person has it, while the test still reads it through a pipe.
Object.defineProperty(process.stdout, 'isTTY', { value: true });
