// ESLint flat config, run as `npm run lint` (eslint . --max-warnings=0): @eslint/js and
// typescript-eslint recommended, three type-aware promise rules on the TypeScript sources, and
// eslint-config-prettier last (it turns off the rules that formatting decides; prettier owns layout).
import js from '@eslint/js';
import { defineConfig, globalIgnores } from 'eslint/config';
import prettier from 'eslint-config-prettier';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default defineConfig(
  globalIgnores(['dist/', 'coverage/', 'container-snapshots/', '.tmp/', 'test/fixtures/']),
  js.configs.recommended,
  tseslint.configs.recommended,
  {
    languageOptions: { globals: globals.node },
    rules: {
      // A leading underscore marks what a signature or a destructuring needs but the body does not use.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_' }],
    },
  },
  {
    // Type-aware, for the .ts files that tsconfig.json covers (bench/ and scripts/ are .mjs, outside it).
    // Only these two of recommendedTypeChecked: a promise nobody awaits, or one handed where a void
    // callback is expected (an emitter's listener, a stream method), loses its rejection, which Node
    // turns into an unhandled rejection that ends the process. The rest of recommendedTypeChecked
    // (no-unsafe-* on parsed JSON, require-await on async interface methods, ...) found no bug here.
    files: ['**/*.ts'],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
    },
  },
  prettier,
);
