import { readFileSync } from "node:fs";

import openapiTS from "openapi-typescript";
import { expect, test } from "vitest";

// The API types are generated, not hand-synced: the committed schema.d.ts must be what openapi-typescript makes
// of the committed openapi.json (whose own freshness against the server is a Python test: test_app_api.py).
test("src/api/schema.d.ts is generated from src/api/openapi.json (npm run api:types)", async () => {
  const generated = await openapiTS(new URL("../src/api/openapi.json", import.meta.url));
  const committed = readFileSync(new URL("../src/api/schema.d.ts", import.meta.url), "utf8");
  expect(committed).toBe(generated);
});
