//! The writer's inbox: the bounded queue between request tasks and the store
//! writer thread.
//!
//! # Why not `std::sync::mpsc`
//!
//! Under load the writer empties its queue with nearly every batch and
//! sleeps until the next command, so almost every batch starts with a
//! submitter waking it. A bounded std channel does that wake-up (a futex
//! syscall) while holding the mutex of its list of waiting receivers, and a
//! second request task submitting at that moment went to sleep on that mutex
//! (about 30 ms per second of request-worker time in `bench/`'s billed run,
//! each sleep another wake-up to schedule). Here the lock is held only to
//! push or pop, and a submitter wakes the writer after releasing it, and
//! only when the writer said, under the lock, that it was going to sleep.
//!
//! One consumer (the thread that calls [`Inbox::pop`]), any number of
//! submitters.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::Thread;
use std::time::Instant;

/// Why a job was not queued; the job comes back.
pub(super) enum PushError<T> {
    /// `capacity` jobs are waiting already.
    Full(T),
    /// [`Inbox::close`] was called.
    Closed(T),
}

/// What [`Inbox::pop`] found.
pub(super) enum Popped<T> {
    Job(T),
    /// The deadline passed with the queue empty.
    TimedOut,
    /// Closed and empty: no job will ever come.
    Closed,
}

pub(super) struct Inbox<T> {
    state: Mutex<State<T>>,
    /// The consuming thread, known from its first [`Inbox::pop`].
    consumer: OnceLock<Thread>,
    capacity: usize,
}

struct State<T> {
    jobs: VecDeque<T>,
    closed: bool,
    /// The consumer found the queue empty and parks (or is about to): the
    /// next push must wake it. Only ever set by the consumer, under the lock.
    consumer_parked: bool,
}

impl<T> Inbox<T> {
    pub(super) fn new(capacity: usize) -> Inbox<T> {
        assert!(capacity > 0, "an inbox holds at least one job");
        Inbox {
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                closed: false,
                consumer_parked: false,
            }),
            consumer: OnceLock::new(),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `job` unless `capacity` jobs wait already or the inbox is closed.
    pub(super) fn push(&self, job: T) -> Result<(), PushError<T>> {
        self.enqueue(job, self.capacity)
    }

    /// Queues `job` even when full (one marker behind everything accepted,
    /// such as a shutdown request); refused only once closed.
    pub(super) fn push_past_capacity(&self, job: T) -> Result<(), T> {
        self.enqueue(job, usize::MAX).map_err(|error| match error {
            PushError::Full(job) | PushError::Closed(job) => job,
        })
    }

    /// Pushes under the lock if fewer than `jobs_max` wait, then wakes the
    /// consumer outside it if it was parking.
    fn enqueue(&self, job: T, jobs_max: usize) -> Result<(), PushError<T>> {
        let wake = {
            let mut state = self.lock();
            if state.closed {
                return Err(PushError::Closed(job));
            }
            if state.jobs.len() >= jobs_max {
                return Err(PushError::Full(job));
            }
            state.jobs.push_back(job);
            std::mem::take(&mut state.consumer_parked)
        };
        if wake {
            self.wake_consumer();
        }
        Ok(())
    }

    /// Refuses every later push; the consumer still gets what is queued, then
    /// [`Popped::Closed`].
    pub(super) fn close(&self) {
        let wake = {
            let mut state = self.lock();
            state.closed = true;
            std::mem::take(&mut state.consumer_parked)
        };
        if wake {
            self.wake_consumer();
        }
    }

    fn wake_consumer(&self) {
        // Set before the consumer first marks itself parked, so always
        // present here.
        if let Some(consumer) = self.consumer.get() {
            consumer.unpark();
        }
    }

    /// The oldest job, waiting for one until `deadline` (forever without
    /// one). Only ever called from one thread: the consumer.
    pub(super) fn pop(&self, deadline: Option<Instant>) -> Popped<T> {
        let consumer = self.consumer.get_or_init(std::thread::current);
        debug_assert_eq!(
            consumer.id(),
            std::thread::current().id(),
            "an inbox has one consumer"
        );
        loop {
            {
                let mut state = self.lock();
                if let Some(job) = state.jobs.pop_front() {
                    state.consumer_parked = false;
                    return Popped::Job(job);
                }
                if state.closed {
                    return Popped::Closed;
                }
                if deadline.is_some_and(|deadline| deadline <= Instant::now()) {
                    state.consumer_parked = false;
                    return Popped::TimedOut;
                }
                state.consumer_parked = true;
            }
            // A push after the lock was released unparks this thread; an
            // unpark that comes before the park makes the park return at
            // once, so no wake-up is lost. Spurious returns just loop.
            match deadline {
                None => std::thread::park(),
                Some(deadline) => {
                    std::thread::park_timeout(deadline.saturating_duration_since(Instant::now()));
                }
            }
        }
    }

    /// Moves up to `count_max` more queued jobs, oldest first, into `batch`
    /// under one lock, without waiting.
    pub(super) fn pop_more(&self, batch: &mut Vec<T>, count_max: usize) {
        let mut state = self.lock();
        let count = count_max.min(state.jobs.len());
        batch.extend(state.jobs.drain(..count));
    }

    /// Jobs waiting now.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lock().jobs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn full_and_closed_inboxes_give_the_job_back() {
        let inbox = Inbox::new(2);
        assert!(inbox.push(1).is_ok() && inbox.push(2).is_ok());
        assert!(matches!(inbox.push(3), Err(PushError::Full(3))));
        assert!(inbox.push_past_capacity(4).is_ok());
        assert_eq!(inbox.len(), 3);
        inbox.close();
        assert!(matches!(inbox.push(5), Err(PushError::Closed(5))));
        assert!(matches!(inbox.push_past_capacity(6), Err(6)));
        // What was queued before the close still comes out, in order.
        let mut got = Vec::new();
        while let Popped::Job(job) = inbox.pop(None) {
            got.push(job);
        }
        assert_eq!(got, [1, 2, 4]);
        assert!(matches!(inbox.pop(None), Popped::Closed));
    }

    #[test]
    fn pop_times_out_on_an_empty_inbox_and_pop_more_respects_its_count() {
        let inbox = Inbox::new(16);
        let started = Instant::now();
        let deadline = started + Duration::from_millis(20);
        assert!(matches!(inbox.pop(Some(deadline)), Popped::TimedOut));
        assert!(Instant::now() >= deadline);
        for job in 0..10 {
            assert!(inbox.push(job).is_ok());
        }
        let mut batch = Vec::new();
        inbox.pop_more(&mut batch, 4);
        assert_eq!(batch, [0, 1, 2, 3]);
        inbox.pop_more(&mut batch, 100);
        assert_eq!(batch, (0..10).collect::<Vec<_>>());
        assert_eq!(inbox.len(), 0);
    }

    /// Many submitters against a consumer that sleeps whenever the queue
    /// runs dry: every job arrives exactly once, and no wake-up is lost (a
    /// lost one leaves the consumer parked with jobs queued until its
    /// deadline, which the consumer checks for).
    #[test]
    fn no_job_and_no_wake_up_is_lost_under_concurrent_submitters() {
        const SUBMITTERS: usize = 8;
        const JOBS_PER_SUBMITTER: usize = 20_000;
        let inbox = Arc::new(Inbox::new(64));
        let consumer = {
            let inbox = Arc::clone(&inbox);
            std::thread::spawn(move || {
                let mut seen = vec![0u8; SUBMITTERS * JOBS_PER_SUBMITTER];
                let mut batch = Vec::new();
                let mut lost_wake_ups = 0;
                loop {
                    match inbox.pop(Some(Instant::now() + Duration::from_secs(2))) {
                        Popped::Job(job) => batch.push(job),
                        Popped::Closed => break,
                        Popped::TimedOut => {
                            // Pushes always wake a parked consumer.
                            lost_wake_ups += usize::from(inbox.len() > 0);
                            continue;
                        }
                    }
                    inbox.pop_more(&mut batch, 7);
                    for job in batch.drain(..) {
                        seen[job] += 1;
                    }
                }
                (seen, lost_wake_ups)
            })
        };
        let submitters: Vec<_> = (0..SUBMITTERS)
            .map(|submitter| {
                let inbox = Arc::clone(&inbox);
                std::thread::spawn(move || {
                    for index in 0..JOBS_PER_SUBMITTER {
                        let mut job = submitter * JOBS_PER_SUBMITTER + index;
                        // A full inbox refuses: retry, as a client after 503 would.
                        loop {
                            match inbox.push(job) {
                                Ok(()) => break,
                                Err(PushError::Full(back)) => {
                                    job = back;
                                    std::thread::yield_now();
                                }
                                Err(PushError::Closed(_)) => panic!("closed too early"),
                            }
                        }
                    }
                })
            })
            .collect();
        for submitter in submitters {
            submitter.join().expect("submitter");
        }
        inbox.close();
        let (seen, lost_wake_ups) = consumer.join().expect("consumer");
        assert!(
            seen.iter().all(|&count| count == 1),
            "each job exactly once"
        );
        assert_eq!(lost_wake_ups, 0);
    }
}
