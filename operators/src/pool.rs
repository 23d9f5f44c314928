//! The jobs of a stage shared by the workers of one process, so that none idles while another has
//! jobs queued (deletion/insertion: a job is seconds of forwards, and dealing them out ahead of
//! time left one of two workers idle for a third of the stage when their jobs' costs differed).
//!
//! Each worker's operator for a branch (a model pair) [`put`](JobPool::put)s the jobs dealt to
//! it, stamped with their timely time, and [`take`](JobPool::take)s the next job of its branch
//! whichever worker it was dealt to; it emits the job's results at its own capability, so it only
//! takes jobs at or after the time it holds. Branches are drained in order: a worker takes no job
//! of branch `b` while an earlier branch it also holds still has jobs queued, so the workers of a
//! process run the same models at the same time (libtorch's quantized engine is process-wide, and
//! two branches under different engines would wait for each other).
//!
//! A branch's queue is kept in the jobs' own order (`T: Ord`) rather than the order they came in:
//! deletion/insertion jobs sort by shard first, so the jobs of one shard are taken together and
//! the shard is re-read once for all of them, not once per job.
//!
//! Across processes, jobs are dealt ahead of time as before; the pool only evens out the workers
//! within one.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Mutex;

/// The queued jobs of every branch of one process, and which workers hold each branch open.
#[derive(Debug)]
pub struct JobPool<T> {
    state: Mutex<State<T>>,
}

#[derive(Debug)]
struct State<T> {
    queues: Vec<VecDeque<(u64, T)>>,
    /// (branch, worker): the worker's operator for the branch holds a capability.
    holding: BTreeSet<(usize, usize)>,
}

impl<T: Ord> JobPool<T> {
    pub fn new(branches: usize) -> Self {
        JobPool { state: Mutex::new(State { queues: (0..branches).map(|_| VecDeque::new()).collect(), holding: BTreeSet::new() }) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `jobs` of `branch` at `time`, each in its place by (time, job).
    pub fn put(&self, branch: usize, time: u64, jobs: impl IntoIterator<Item = T>) {
        let q = &mut self.state().queues[branch];
        for job in jobs {
            let at = q.partition_point(|(t, j)| (*t, j) <= (time, &job));
            q.insert(at, (time, job));
        }
    }

    /// Says whether `worker`'s operator for `branch` holds a capability (and so may take jobs).
    pub fn hold(&self, branch: usize, worker: usize, holds: bool) {
        let mut st = self.state();
        if holds {
            st.holding.insert((branch, worker));
        } else {
            st.holding.remove(&(branch, worker));
        }
    }

    /// The next job of `branch` for a worker holding a capability at `held`: the first queued at or
    /// after `held`, unless an earlier branch this worker holds still has jobs queued.
    pub fn take(&self, branch: usize, worker: usize, held: u64) -> Next<T> {
        let mut st = self.state();
        if (0..branch).any(|b| !st.queues[b].is_empty() && st.holding.contains(&(b, worker))) {
            return Next::EarlierBranch;
        }
        let q = &mut st.queues[branch];
        match q.iter().position(|(t, _)| *t >= held).and_then(|at| q.remove(at)) {
            Some((t, job)) => Next::Job(t, job),
            None => Next::Empty,
        }
    }

    /// Jobs of `branch` still queued.
    pub fn queued(&self, branch: usize) -> usize {
        self.state().queues[branch].len()
    }

    /// Calls `f` on every job still queued, of every branch.
    pub fn for_each_queued(&self, f: impl FnMut(&T)) {
        self.state().queues.iter().flatten().map(|(_, job)| job).for_each(f);
    }
}

/// What [`JobPool::take`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Next<T> {
    /// A job and its time.
    Job(u64, T),
    /// Nothing yet: an earlier branch this worker holds comes first.
    EarlierBranch,
    /// No job of the branch this worker may take.
    Empty,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_worker_takes_any_job_of_its_branch_in_order() {
        let pool = JobPool::new(1);
        pool.put(0, 5, ["a", "b"]);
        pool.put(0, 5, ["c"]);
        assert_eq!(pool.take(0, 1, 5), Next::Job(5, "a"), "worker 1 takes what worker 0 put");
        assert_eq!(pool.take(0, 0, 5), Next::Job(5, "b"));
        assert_eq!(pool.take(0, 0, 5), Next::Job(5, "c"));
        assert_eq!(pool.take(0, 0, 5), Next::Empty);
        assert_eq!(pool.queued(0), 0);
    }

    #[test]
    fn a_job_earlier_than_the_held_capability_is_left_alone() {
        let pool = JobPool::new(1);
        pool.put(0, 3, ["early"]);
        pool.put(0, 7, ["late"]);
        assert_eq!(pool.take(0, 0, 5), Next::Job(7, "late"), "a capability at 5 cannot emit at 3");
        assert_eq!(pool.take(0, 0, 5), Next::Empty);
        assert_eq!(pool.take(0, 1, 3), Next::Job(3, "early"));
    }

    #[test]
    fn branches_drain_in_order_for_the_workers_that_hold_them() {
        let pool = JobPool::new(2);
        pool.put(0, 0, ["a0"]);
        pool.put(1, 0, ["b0", "b1"]);
        pool.hold(0, 0, true);
        pool.hold(1, 0, true);
        pool.hold(1, 1, true);
        assert_eq!(pool.take(1, 0, 0), Next::EarlierBranch, "worker 0 holds branch 0, which still has a job");
        assert_eq!(pool.take(1, 1, 0), Next::Job(0, "b0"), "worker 1 does not hold branch 0: no reason to wait");
        assert_eq!(pool.take(0, 0, 0), Next::Job(0, "a0"));
        assert_eq!(pool.take(1, 0, 0), Next::Job(0, "b1"), "branch 0 is empty now");
        pool.hold(0, 0, false);
        pool.put(0, 0, ["a1"]);
        pool.put(1, 0, ["b2"]);
        assert_eq!(pool.take(1, 0, 0), Next::Job(0, "b2"), "worker 0 let go of branch 0");
    }

    #[test]
    fn jobs_are_taken_in_their_own_order_within_a_time() {
        // (shard, deal): the jobs of one shard come out together whatever order they were put in.
        let pool = JobPool::new(1);
        pool.put(0, 2, [("s1", 0), ("s0", 1)]);
        pool.put(0, 1, [("s9", 5)]);
        pool.put(0, 2, [("s1", 2), ("s0", 3)]);
        let mut seen = Vec::new();
        pool.for_each_queued(|j| seen.push(*j));
        assert_eq!(seen, [("s9", 5), ("s0", 1), ("s0", 3), ("s1", 0), ("s1", 2)], "time first, then the job");
        let taken: Vec<_> = std::iter::from_fn(|| match pool.take(0, 0, 2) {
            Next::Job(_, j) => Some(j),
            _ => None,
        })
        .collect();
        assert_eq!(taken, [("s0", 1), ("s0", 3), ("s1", 0), ("s1", 2)]);
        assert_eq!(pool.take(0, 0, 1), Next::Job(1, ("s9", 5)));
    }
}
