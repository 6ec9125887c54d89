//! How the kernel schedules the store's own threads (the writer and the
//! checkpoint thread): `SCHED_BATCH` on Linux, so that waking one of them
//! never preempts a request worker.
//!
//! # Why
//!
//! Under load a request worker queues a charge and wakes the writer. Under
//! the default policy the woken writer preempts that worker at once on the
//! same core (and an `fdatasync`'s completion does the same to whatever runs
//! where its interrupt lands): the writer commits the one command it finds,
//! while the worker that would have queued the next ones waits, runnable,
//! often with the other core idle (BENCHMARKS.md, "Why the other core
//! idles"). Neither thread is latency-critical by a few microseconds: the
//! writer's callers wait for an `fdatasync` anyway, and the checkpoint is
//! background work. Under `SCHED_BATCH` (same nice value, same share of CPU
//! time) a woken store thread runs on an idle core or when the running
//! thread's slice ends or it sleeps, and its batch holds what was queued
//! meanwhile. With one connection nothing else is runnable, so a commit
//! starts as soon as before; BENCHMARKS.md has the measurements.
//!
//! Elsewhere, under a nice value other than 0 (an operator who started the
//! Hub with `nice` chose its priority, and the library sets nice 0 along
//! with the policy), and if the kernel refuses, the threads keep the default
//! policy; that changes timing, not correctness.

/// Spawns one of the store's own threads, named `name`, running `body`
/// under the policy this module describes.
pub(super) fn spawn_store_thread<T: Send + 'static>(
    name: &str,
    body: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<T>> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            run_as_batch_thread();
            body()
        })
}

/// Puts the calling thread under `SCHED_BATCH` if it runs at nice 0,
/// logging (not failing) when the kernel refuses.
fn run_as_batch_thread() {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::{
            NormalThreadSchedulePolicy, ThreadPriority, ThreadPriorityOsValue,
            ThreadSchedulePolicy, set_thread_priority_and_policy, thread_native_id,
        };
        // On Linux the `PRIO_PROCESS` priority of "self" is the calling
        // thread's nice value.
        match rustix::process::getpriority_process(None) {
            Ok(0) => {}
            Ok(nice) => {
                tracing::debug!(
                    nice,
                    "a store thread keeps the default policy under its nice value"
                );
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read a store thread's nice value; keeping the default policy");
                return;
            }
        }
        // A normal policy's priority is its nice value; the default is 0,
        // the thread's own, so its share of CPU time stays as it was.
        let nice_unchanged = ThreadPriority::Os(ThreadPriorityOsValue::default());
        let batch = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Batch);
        if let Err(error) =
            set_thread_priority_and_policy(thread_native_id(), nice_unchanged, batch)
        {
            tracing::warn!(
                ?error,
                "cannot run a store thread under SCHED_BATCH; keeping the default policy"
            );
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The policy and nice value of the calling thread, from
    /// `/proc/thread-self/sched` and `/proc/thread-self/stat`.
    fn policy_and_nice() -> (u32, i32) {
        let sched = std::fs::read_to_string("/proc/thread-self/sched").expect("sched");
        let policy = sched
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                (name.trim() == "policy").then(|| value.trim().parse().expect("policy number"))
            })
            .expect("a policy line");
        let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("stat");
        // Fields after the command name (in parentheses): nice is field 19,
        // the 17th after it.
        let after_name = &stat[stat.rfind(')').expect("comm") + 2..];
        let nice = after_name
            .split(' ')
            .nth(16)
            .expect("nice field")
            .parse()
            .expect("nice number");
        (policy, nice)
    }

    const SCHED_OTHER: u32 = 0;
    const SCHED_BATCH: u32 = 3;

    /// At nice 0 (how the Hub normally runs) a store thread changes policy
    /// and keeps its nice value; a thread someone reniced keeps both. (Run
    /// under `nice` itself, the first thread takes the second path.)
    #[test]
    fn a_store_thread_runs_under_sched_batch_unless_reniced() {
        let at_start = std::thread::spawn(|| {
            let (policy, nice) = policy_and_nice();
            assert_eq!(
                policy, SCHED_OTHER,
                "a new thread starts under the default policy"
            );
            run_as_batch_thread();
            (nice, policy_and_nice())
        })
        .join()
        .expect("thread");
        match at_start {
            (0, after) => assert_eq!(after, (SCHED_BATCH, 0)),
            (nice, after) => assert_eq!(after, (SCHED_OTHER, nice)),
        }
        std::thread::spawn(|| {
            let (_, nice) = policy_and_nice();
            let lower = (nice + 5).min(19);
            // Lowering one's own priority needs no privilege.
            rustix::process::setpriority_process(None, lower).expect("renice the test thread");
            run_as_batch_thread();
            assert_eq!(policy_and_nice(), (SCHED_OTHER, lower));
        })
        .join()
        .expect("thread");
    }
}
