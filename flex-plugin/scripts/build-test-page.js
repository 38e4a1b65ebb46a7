// Bundles the test page (src/testPage/) into test-page/ for the browser test. Not part of
// the plugin: the plugin bundle is `npm run build` (flex-plugin build).
const path = require('path');
const fs = require('fs');
const esbuild = require('esbuild');

const root = path.resolve(__dirname, '..');
const out = path.join(root, 'test-page');
fs.mkdirSync(out, { recursive: true });
fs.copyFileSync(path.join(root, 'src/testPage/index.html'), path.join(out, 'index.html'));
esbuild
  .build({
    entryPoints: [path.join(root, 'src/testPage/main.tsx')],
    bundle: true,
    minify: true,
    outfile: path.join(out, 'test-page.js'),
    target: ['chrome100'],
    define: { 'process.env.NODE_ENV': '"production"' },
    logLevel: 'warning',
  })
  .catch(() => process.exit(1));
