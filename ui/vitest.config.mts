import path from "node:path";
import { defineConfig } from "vitest/config";

// Unit tests only: Playwright specs live in e2e/ and run with `npm run test:e2e`. Hook tests pick a DOM per file
// (`// @vitest-environment happy-dom`).
export default defineConfig({
  resolve: { alias: { "@": path.resolve(import.meta.dirname, "src") } },
  test: {
    include: ["tests/**/*.test.ts", "tests/**/*.test.tsx"],
    environment: "node",
  },
});
