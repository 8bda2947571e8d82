//! Order-keeping parallel map over the cores, for the per-file work of large trees
//! (rendering, comparing with what is on disk, staging temporary files).

use std::sync::OnceLock;

/// At most this many threads: the work is a few milliseconds per thousand files, and more
/// threads mostly contend on directory locks.
const MAX_THREADS: usize = 8;

/// Cores available to this process, read once: the lookup costs several syscalls (cgroup
/// quota files), which matter when a run takes a millisecond.
fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MAX_THREADS)
    })
}

/// `items.iter().map(f).collect()`, spread over the cores in contiguous chunks of at least
/// `min_chunk` items; small inputs run on the calling thread. A panic in `f` is resumed on
/// the caller.
pub(crate) fn map<T, R, F>(items: &[T], min_chunk: usize, f: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> R + Sync,
{
    let threads = cores().min(items.len() / min_chunk.max(1)).max(1);
    if threads == 1 {
        return items.iter().map(&f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let mut parts = items.chunks(chunk);
        // The calling thread takes the first chunk itself rather than idling in join.
        let first = parts.next().unwrap_or_default();
        let caller_cpu = current_cpu();
        let workers: Vec<_> = parts
            .map(|part| {
                let worker = scope.spawn(move || {
                    move_off(caller_cpu);
                    part.iter().map(f).collect::<Vec<R>>()
                });
                // Let the new thread run now, on this CPU, so that it moves itself off.
                std::thread::yield_now();
                worker
            })
            .collect();
        let mut results: Vec<R> = first.iter().map(f).collect();
        for worker in workers {
            results.extend(
                worker
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            );
        }
        results
    })
}

/// The CPU the calling thread runs on.
fn current_cpu() -> Option<usize> {
    nix::sched::sched_getcpu().ok()
}

/// Moves the calling (new) thread off `cpu`, then lets it go anywhere again. A new thread
/// starts on its parent's CPU, and on some VMs (idle vCPUs halted) the scheduler leaves it
/// there for the few milliseconds the work lasts: the two threads then share one CPU while
/// the other idles. Best effort; nothing changes where affinity cannot be read or set.
fn move_off(cpu: Option<usize>) {
    use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
    use nix::unistd::Pid;
    let (Some(cpu), Ok(allowed)) = (cpu, sched_getaffinity(Pid::from_raw(0))) else {
        return;
    };
    let mut elsewhere = allowed;
    if elsewhere.unset(cpu).is_err() {
        return;
    }
    let any_left = (0..CpuSet::count()).any(|c| elsewhere.is_set(c).unwrap_or(false));
    if any_left && sched_setaffinity(Pid::from_raw(0), &elsewhere).is_ok() {
        let _ = sched_setaffinity(Pid::from_raw(0), &allowed);
    }
}

/// Locks `mutex`, carrying on past a panic elsewhere: the data guarded here (sets of paths)
/// stays consistent at every step.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_at_every_size() {
        for len in [0, 1, 15, 16, 17, 100, 1001] {
            let items: Vec<usize> = (0..len).collect();
            let doubled = map(&items, 16, |n| n * 2);
            assert_eq!(doubled, items.iter().map(|n| n * 2).collect::<Vec<_>>());
        }
    }

    #[test]
    fn panics_reach_the_caller() {
        let items: Vec<usize> = (0..100).collect();
        let outcome = std::panic::catch_unwind(|| {
            map(&items, 1, |n| if *n == 99 { panic!("boom") } else { *n })
        });
        assert!(outcome.is_err());
    }
}
