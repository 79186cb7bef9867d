// Jest (jsdom) for the extension's components and client, on JupyterLab's preset.
const jestJupyterLab = require('@jupyterlab/testing/lib/jest-config');

const esModules = [
  '@codemirror',
  '@jupyter/ydoc',
  '@jupyter/react-components',
  '@jupyter/web-components',
  '@jupyterlab/',
  '@microsoft',
  'exenv-es6',
  'lib0',
  'marked',
  'nanoid',
  'vscode-ws-jsonrpc',
  'y-protocols',
  'y-websocket',
  'yjs'
].join('|');

const baseConfig = jestJupyterLab(__dirname);

module.exports = {
  ...baseConfig,
  automock: false,
  // No junit/github reporters: plain output, and nothing written into the work tree.
  reporters: ['default'],
  testRegex: 'src/__tests__/.*\\.spec\\.tsx?$',
  modulePathIgnorePatterns: ['<rootDir>/dist/', '<rootDir>/lib/'],
  transformIgnorePatterns: [`/node_modules/(?!${esModules}).+`]
};
