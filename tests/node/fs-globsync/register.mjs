// Lets @modelcontextprotocol/conformance run on Node 20 (`node --import
// ./register.mjs …`). The package imports `globSync` from `fs`, which Node
// has only from 22 on, so on older Nodes this hook hands the package's
// modules an `fs` that adds `globSync` from the `glob` package (same
// pattern-and-options shape). On Node 22 and later it does nothing.
import { register } from 'node:module';

const major = Number(process.versions.node.split('.')[0]);
if (major < 22) {
  register('./loader.mjs', import.meta.url);
}
