// A FHIR Bulk Data export driven by Medplum's client (@medplum/core), as a module vendor's code
// would run it: kick-off with `Prefer: respond-async`, polling until the manifest arrives, then
// every file downloaded. Writes the files into OUT and the manifest to stdout.
//
//   FLODE_NODE_MODULES=.node/node_modules node export.mjs ROOT TOKEN LEVEL TYPES SINCE OUT
//
// LEVEL is "" (system), "Patient" or "Group/{id}"; TYPES and SINCE may be "".
import { mkdir, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const require = createRequire(join(process.env.FLODE_NODE_MODULES, 'noop.js'));
const { MedplumClient } = require('@medplum/core');

const [root, token, level, types, since, out] = process.argv.slice(2);
const medplum = new MedplumClient({ baseUrl: `${root}/`, fhirUrlPath: 'fhir' });
medplum.setAccessToken(token);

const manifest = await medplum.bulkExport(level, types || undefined, since || undefined, {
  pollStatusOnAccepted: true,
  pollStatusPeriod: 100,
});
await mkdir(out, { recursive: true });
for (const [n, item] of (manifest.output ?? []).entries()) {
  const response = await fetch(item.url, {
    headers: { Authorization: `Bearer ${token}`, Accept: 'application/fhir+ndjson' },
  });
  if (!response.ok) {
    throw new Error(`GET ${item.url}: ${response.status}`);
  }
  await writeFile(join(out, `${n}-${item.type}.ndjson`), await response.text());
}
process.stdout.write(JSON.stringify(manifest));
