import { closeSync } from 'node:fs';

/**
 * open(2)'s O_PATH (Linux asm-generic/fcntl.h, x86-64 and arm64 alike; not in node's constants): a
 * descriptor that names an inode without opening it for reading — a directory to resolve names
 * below, or a file whose open might act (a device) that is only to be stat'ed.
 */
export const O_PATH = 0o10000000;

/** closeSync that throws nothing (a descriptor closed already: EBADF), for cleanup paths that must go on. */
export function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // closed already
  }
}
