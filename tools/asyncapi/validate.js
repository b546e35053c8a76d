// Validates an AsyncAPI document with the official parser (@asyncapi/parser, pinned in
// package-lock.json). Prints every diagnostic, one per line, then a JSON summary of what
// the parser understood. Exit 0: valid; 1: the parser reports errors; 2: bad usage.
'use strict';

const fs = require('fs');
const path = require('path');
const { Parser } = require('@asyncapi/parser');

// Spectral's severities, as the parser reports them.
const SEVERITY = ['error', 'warning', 'information', 'hint'];

async function main() {
  const file = process.argv[2];
  if (!file) {
    console.error('usage: node validate.js DOCUMENT');
    return 2;
  }
  const text = fs.readFileSync(file, 'utf8');
  const { document, diagnostics } = await new Parser().parse(text, {
    source: path.resolve(file),
  });
  for (const diagnostic of diagnostics) {
    const where = diagnostic.path.join('/') || '<root>';
    console.log(`${SEVERITY[diagnostic.severity]} ${diagnostic.code} ${where}: ${diagnostic.message}`);
  }
  const errors = diagnostics.filter((diagnostic) => diagnostic.severity === 0);
  if (document === undefined || errors.length > 0) {
    console.log(`INVALID: ${errors.length} error(s)`);
    return 1;
  }
  const summary = {
    asyncapi: document.version(),
    channels: document.channels().all().map((channel) => ({
      id: channel.id(),
      address: channel.address(),
      messages: channel.messages().all().map((message) => message.name()),
    })),
    warnings: diagnostics.filter((diagnostic) => diagnostic.severity === 1).length,
  };
  console.log(JSON.stringify(summary));
  return 0;
}

main().then((code) => process.exit(code), (error) => {
  console.error(error && error.stack ? error.stack : String(error));
  process.exit(1);
});
