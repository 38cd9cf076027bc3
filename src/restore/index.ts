import '../shims.js';
import { run } from '../action/run.js';
import { main, post } from './main.js';

await run(main, post);
