import '../shims.js';
import { run } from '../action/run.js';
import { main } from './main.js';

await run(main);
