//! Every table is written the same way: rows are sent to the worker that writes their part, which
//! gathers them and writes the part once the frontier shows it complete, then reports a
//! [`Written`] notice. Shard tables complete at their shard's last batch; run-level tables at the
//! end of the run, as pending parts that [`crate::ledger::commit`] puts into place.

use std::collections::BTreeMap;
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::StreamVec;
use timely::ExchangeData;

use tables::Table;

use crate::progress::Failure;

/// A part file a sink wrote.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Written {
    pub table: String,
    pub part: String,
    pub rows: usize,
}

/// Which parts of a table exist, who writes each, and where.
#[derive(Clone)]
pub struct Parts {
    /// The parts this worker writes, each with the time after which all of its rows have arrived.
    /// Every one is written, empty or not, so a finished unit is visible as such.
    pub mine: BTreeMap<String, u64>,
    /// The worker that writes a part (the same answer on every worker).
    pub writer: Rc<dyn Fn(&str) -> u64>,
    /// Run-level parts are written pending and put into place when the run commits.
    pub pending: bool,
    pub out: tables::RunDir,
    pub failure: Failure,
}

impl Parts {
    fn write<T: Table>(&self, part: &str, rows: &[T]) -> Result<(), tables::TableError> {
        if self.pending {
            tables::write_part_at(&self.out, &crate::ledger::pending_key(T::NAME, part), rows)
        } else {
            tables::write_part(&self.out, part, rows).map(|_| ())
        }
    }
}

/// Extension trait: write a stream of `(part, row)` as a table's part files.
pub trait WriteParts<'s, T> {
    /// Sends each row to its part's writer, which writes the part once complete and emits one
    /// [`Written`] notice for it at the part's last time. A write that fails is recorded in
    /// `parts.failure` instead (the run then stops with its message, naming the file).
    ///
    /// ```ignore
    /// image_rows.by_shard(clock, names).write_parts(parts_of_shards)
    /// ```
    fn write_parts(self, parts: Parts) -> StreamVec<'s, u64, Written>;
}

impl<'s, T: Table + ExchangeData> WriteParts<'s, T> for StreamVec<'s, u64, (String, T)> {
    fn write_parts(self, parts: Parts) -> StreamVec<'s, u64, Written> {
        let writer = parts.writer.clone();
        let route = Exchange::new(move |(part, _): &(String, T)| writer(part));
        self.unary_frontier::<CapacityContainerBuilder<Vec<Written>>, _, _, _>(route, &format!("Write[{}]", T::NAME), move |cap, _info| {
            // One capability, kept at the earliest time a part of ours can still complete.
            let mut cap = parts.mine.values().min().map(|t| cap.delayed(t));
            let mut left = parts.mine.clone();
            let mut stash: BTreeMap<String, Vec<T>> = BTreeMap::new();
            move |(input, frontier), output| {
                input.for_each(|_, data| {
                    for (part, row) in data.drain(..) {
                        debug_assert!(left.contains_key(&part) || !parts.mine.contains_key(&part), "a row for part {part} after it was written");
                        stash.entry(part).or_default().push(row);
                    }
                });
                let Some(held) = cap.as_mut() else { return };
                let complete: Vec<(String, u64)> =
                    left.iter().filter(|(_, last)| !frontier.less_equal(last)).map(|(p, &t)| (p.clone(), t)).collect();
                for (part, last) in complete {
                    left.remove(&part);
                    let rows = stash.remove(&part).unwrap_or_default();
                    match parts.write(&part, &rows) {
                        Ok(()) => output.session(&held.delayed(&last)).give(Written { table: T::NAME.into(), part, rows: rows.len() }),
                        Err(e) => parts.failure.set(e.to_string()),
                    }
                }
                match left.values().min() {
                    Some(t) => held.downgrade(t),
                    None => cap = None,
                }
            }
        })
    }
}

/// Extension trait: tag each record with the shard its batch belongs to (its part).
pub trait ByShard<'s, T> {
    /// `names[i]` is shard `i`'s name; the time says the shard ([`crate::plan::Clock::shard_of`]).
    fn by_shard(self, clock: crate::plan::Clock, names: Rc<Vec<String>>) -> StreamVec<'s, u64, (String, T)>;
}

impl<'s, T: Clone + 'static> ByShard<'s, T> for StreamVec<'s, u64, T> {
    fn by_shard(self, clock: crate::plan::Clock, names: Rc<Vec<String>>) -> StreamVec<'s, u64, (String, T)> {
        self.unary(Pipeline, "ByShard", move |_cap, _info| {
            move |input, output| {
                input.for_each(|cap, data| {
                    let Some(&time) = cap.least() else { return };
                    let name = &names[clock.shard_of(time)];
                    output.session(&cap).give_iterator(data.drain(..).map(|row| (name.clone(), row)));
                });
            }
        })
    }
}

/// Extension trait: count a stream's records as they pass.
pub trait Count<'s, T> {
    /// Calls `f` with the summed `weight` of each message's records.
    fn count_with(self, f: Rc<dyn Fn(usize)>, weight: impl Fn(&T) -> usize + 'static) -> StreamVec<'s, u64, T>;
}

impl<'s, T: Clone + 'static> Count<'s, T> for StreamVec<'s, u64, T> {
    fn count_with(self, f: Rc<dyn Fn(usize)>, weight: impl Fn(&T) -> usize + 'static) -> StreamVec<'s, u64, T> {
        use timely::dataflow::operators::core::Inspect;
        self.inspect_core(move |event| {
            if let Ok((_, data)) = event {
                f(data.iter().map(&weight).sum());
            }
        })
    }
}

/// Extension trait: the ledger's record of finished shards, kept as their parts are written.
pub trait RecordShards<'s> {
    /// Once all `tables` parts of a shard are written (they have one writer), calls `done` with
    /// the shard's name and each part's row count. Notices pass through unchanged.
    fn record_shards<F>(self, tables: &'static [&'static str], done: F) -> StreamVec<'s, u64, Written>
    where
        F: FnMut(&str, BTreeMap<String, usize>) + 'static;
}

impl<'s> RecordShards<'s> for StreamVec<'s, u64, Written> {
    fn record_shards<F>(self, tables: &'static [&'static str], mut done: F) -> StreamVec<'s, u64, Written>
    where
        F: FnMut(&str, BTreeMap<String, usize>) + 'static,
    {
        let mut seen: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
        self.unary(Pipeline, "RecordShards", move |_cap, _info| {
            move |input, output| {
                input.for_each(|cap, data| {
                    for w in data.iter() {
                        let rows = seen.entry(w.part.clone()).or_default();
                        rows.insert(w.table.clone(), w.rows);
                        if tables.iter().all(|t| rows.contains_key(*t)) {
                            done(&w.part, seen.remove(&w.part).unwrap_or_default());
                        }
                    }
                    output.session(&cap).give_container(data);
                });
            }
        })
    }
}
