// Jest runs directly (the same Jest 27 and Babel preset `flex-plugin test` uses): in
// @twilio/flex-plugin-scripts 7.1.2 that wrapper hands Jest its own `--run-script` flag,
// which Jest refuses.
module.exports = {
  testEnvironment: 'jsdom',
  roots: ['<rootDir>/src'],
  testMatch: ['**/__tests__/**/*.test.{ts,tsx}'],
  transform: {
    '^.+\\.(ts|tsx|js|jsx)$': ['babel-jest', { presets: [['babel-preset-react-app', { runtime: 'classic' }]] }],
  },
  setupFiles: ['<rootDir>/src/__tests__/setup.ts'],
};
