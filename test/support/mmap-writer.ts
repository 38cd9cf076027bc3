import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';

/**
 * Perl (perl-base, on every Debian host) with raw Linux x86_64 system calls: maps the file named by
 * its argument shared and writable (mmap 9, PROT_READ|PROT_WRITE, MAP_SHARED), then copies each
 * chunk read from its stdin to the start of the mapping with read(2) (0) straight into the mapped
 * memory: a write through the mapping, as a database's. The first write faults and updates the
 * file's times; later ones, while the page stays dirty, do not (the kernel updates them again
 * only after writeback). It prints `mapped` once, `wrote N` after each chunk.
 */
const SCRIPT = `
open(my $fh, '+<', $ARGV[0]) or die "open: $!";
my $len = -s $fh;
my $addr = syscall(9, 0, $len, 3, 1, fileno($fh), 0);
die "mmap: $!" if $addr == -1;
$| = 1; print "mapped\\n";
while (1) { my $n = syscall(0, 0, $addr, $len); last if $n <= 0; print "wrote $n\\n"; }
`;

/**
 * A process on this host holding `file` mapped shared (see SCRIPT): `write(bytes)` puts them at its
 * start through the mapping and resolves once done; `close()` ends the process. Throws on another
 * architecture than x86_64 (the system call numbers are that ABI's) or when the file cannot be mapped.
 */
export class MmapWriter {
  private constructor(
    private readonly child: ChildProcessWithoutNullStreams,
    private readonly lines: AsyncIterator<string>,
  ) {}

  static async open(file: string): Promise<MmapWriter> {
    if (process.arch !== 'x64') throw new Error(`MmapWriter needs x86_64 system call numbers, not ${process.arch}`);
    const child = spawn('perl', ['-e', SCRIPT, file], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
    const w = new MmapWriter(child, lines);
    const first = await lines.next();
    if (first.value !== 'mapped') throw new Error(`perl did not map ${file}: ${stderr || 'no output'}`);
    return w;
  }

  async write(bytes: Buffer): Promise<void> {
    this.child.stdin.write(bytes);
    const line = await this.lines.next();
    if (line.value !== `wrote ${bytes.length}`) throw new Error(`the mapping writer said ${String(line.value)}`);
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null) return;
    this.child.stdin.end();
    await once(this.child, 'exit');
  }
}
