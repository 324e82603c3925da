export default async function globalTeardown(): Promise<void> {
  const pg = (globalThis as { __parleyPg?: { dispose(): Promise<void> } }).__parleyPg;
  await pg?.dispose();
}
