/**
 * Preloaded (`node --expose-gc --require bench/agent.js …`) into every contender process, Node-RED included, so
 * the driver can ask each one the same questions over the IPC channel without adding anything to its flows:
 *
 *   {cmd:'mem', gc:true} → collects garbage (twice, to let finalizers run) and answers process.memoryUsage(),
 *                          the CPU time used so far, and the peak RSS (resourceUsage().maxRSS, KiB).
 *
 * It does nothing else: no timers, no hooks on the hot path.
 */
interface MemRequest {
  cmd?: string;
  gc?: boolean;
  id?: number;
  agent?: boolean;
}

const gc = (globalThis as { gc?: () => void }).gc;

if (typeof process.send === 'function') {
  process.on('message', (m: MemRequest) => {
    if (!m || typeof m !== 'object' || !m.agent) return;
    if (m.cmd === 'mem') {
      const answer = (): void => {
        const cpu = process.cpuUsage();
        process.send?.({
          agent: true,
          id: m.id,
          data: {
            memory: process.memoryUsage(),
            cpuMs: (cpu.user + cpu.system) / 1000,
            // The kernel's part of it: system calls (sockets, the file store's writes), page faults.
            sysMs: cpu.system / 1000,
            maxRssKiB: process.resourceUsage().maxRSS,
            gc: !!gc,
            // When this process's clock started (epoch ms): what --trace-gc's times count from, roughly.
            timeOrigin: performance.timeOrigin,
          },
        });
      };
      if (m.gc && gc) {
        gc();
        // A second collection after pending finalizers and weak callbacks had a turn.
        setTimeout(() => {
          gc();
          answer();
        }, 100);
      } else answer();
    }
  });
  // The IPC channel must not keep a contender alive on its own.
  (process.channel as { unref?: () => void } | undefined)?.unref?.();
}
