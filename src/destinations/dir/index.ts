export { DirDestination } from './destination.js';
export { parseSetRecord, type SetRecord } from './set-record.js';
