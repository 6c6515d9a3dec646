// The resolve hook `register.mjs` installs: `fs` (or `node:fs`) imported by
// the conformance package resolves to `fs.mjs` instead, and the `glob`
// that `fs.mjs` imports is found where the package is installed.
const shim = new URL('./fs.mjs', import.meta.url).href;
let packageModule;

export async function resolve(specifier, context, next) {
  const parent = context.parentURL ?? '';
  if (parent.includes('/@modelcontextprotocol/conformance/')) {
    packageModule = parent;
    if (specifier === 'fs' || specifier === 'node:fs') {
      return { url: shim, shortCircuit: true };
    }
  }
  if (parent === shim && specifier === 'glob') {
    return next(specifier, { ...context, parentURL: packageModule });
  }
  return next(specifier, context);
}
