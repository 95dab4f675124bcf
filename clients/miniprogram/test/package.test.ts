// What a mini-program project gets when it installs the package: no runtime dependencies,
// output that needs nothing of node, and a `miniprogram` folder for DevTools' "build npm".

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';

const root = path.resolve(__dirname, '..', '..');

test('the package has no runtime dependencies and points DevTools at dist', () => {
  const manifest = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'));
  assert.equal(manifest.name, 'wxlogin-miniprogram');
  assert.equal(manifest.miniprogram, 'dist');
  assert.equal(manifest.dependencies, undefined);
  assert.equal(manifest.main, 'dist/index.js');
  assert.equal(manifest.types, 'dist/index.d.ts');
});

test('the built output requires nothing, and is ES2017', () => {
  const built = readFileSync(path.join(root, 'dist', 'index.js'), 'utf8');
  assert.doesNotMatch(built, /require\(/, 'no module, of node or any other');
  assert.doesNotMatch(built, /\?\?|\?\./, 'no syntax newer than ES2017');
  assert.match(readFileSync(path.join(root, 'dist', 'index.d.ts'), 'utf8'), /export declare function createClient/);
});
