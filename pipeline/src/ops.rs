//! The graph's own small operators, around the paper's steps (`operators`): stamping explained
//! records with their epoch, turning the differential state into `aggregates` rows, and deciding,
//! once selection is final, the `subset` rows and which images deletion/insertion still needs.
//! Each is an extension trait whose closure only routes records; the decisions are plain
//! functions below it.

use std::collections::{BTreeMap, HashMap};

use differential_dataflow::{AsCollection, VecCollection};
use operators::perturb::PerturbJob;
use operators::subset::{Ranked, Scored, Totals};
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::StreamVec;
use types::{AggregateRow, Method, PerturbationRow, SubsetRow};

use crate::plan::Clock;

/// Final state of a collection's updates: records with a positive count, in order.
fn positive<D: Ord>(state: &BTreeMap<D, isize>) -> impl Iterator<Item = &D> {
    state.iter().filter(|(_, &c)| c > 0).map(|(d, _)| d)
}

/// Extension trait: explained records as differential updates of their pair's collection.
pub trait EpochUpdates<'s> {
    /// Each record is stamped with the end of its epoch, so selection and the aggregates change
    /// once per epoch, not once per batch.
    fn epoch_updates(self, pair: String, clock: Clock) -> VecCollection<'s, u64, (String, Scored)>;
}

impl<'s> EpochUpdates<'s> for StreamVec<'s, u64, Scored> {
    fn epoch_updates(self, pair: String, clock: Clock) -> VecCollection<'s, u64, (String, Scored)> {
        self.unary(Pipeline, "EpochUpdates", move |_cap, _info| {
            move |input, output| {
                input.for_each(|cap, data| {
                    let Some(&time) = cap.least() else { return };
                    // Later than the message's time, which a collection allows.
                    let t = clock.epoch_end(clock.epoch_of(time));
                    output.session(&cap).give_iterator(data.drain(..).map(|s| ((pair.clone(), s), t, 1isize)));
                });
            }
        })
        .as_collection()
    }
}

/// Extension trait: the `aggregates` rows of a pair, on its writer.
pub trait AggregateRows<'s> {
    /// One row per variant for every epoch: the state once the frontier has passed the epoch's end.
    fn aggregate_rows(self, pair: String, writer: u64, clock: Clock) -> StreamVec<'s, u64, (String, AggregateRow)>;
}

impl<'s> AggregateRows<'s> for VecCollection<'s, u64, (String, Totals)> {
    fn aggregate_rows(self, pair: String, writer: u64, clock: Clock) -> StreamVec<'s, u64, (String, AggregateRow)> {
        let last_epoch = clock.last_epoch();
        self.inner.unary_frontier(Exchange::new(move |_| writer), "AggregateRows", move |cap, _info| {
            let mut cap = Some(cap);
            let mut pending: Vec<(Totals, u64, isize)> = Vec::new();
            let mut state: BTreeMap<Totals, isize> = BTreeMap::new();
            let mut epoch = 0;
            move |(input, frontier), output| {
                input.for_each(|_, data| pending.extend(data.drain(..).map(|((_, t), time, diff)| (t, time, diff))));
                while epoch <= last_epoch && !frontier.less_equal(&clock.epoch_end(epoch)) {
                    let end = clock.epoch_end(epoch);
                    for (t, _, diff) in pending.extract_if(.., |(_, time, _)| *time <= end) {
                        *state.entry(t).or_default() += diff;
                    }
                    if let (Some(t), Some(held)) = (positive(&state).next(), cap.as_ref()) {
                        output.session(&held.delayed(&end)).give_iterator(t.rows(epoch, &pair).into_iter().map(|r| (pair.clone(), r)));
                    }
                    epoch += 1;
                    match cap.as_mut() {
                        Some(held) if epoch <= last_epoch => held.downgrade(&clock.epoch_end(epoch)),
                        _ => cap = None,
                    }
                }
            }
        })
    }
}

/// What the final ranking decides for one image of a pair.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Decision {
    /// A `subset` row.
    Subset(SubsetRow),
    /// Deletion/insertion still to compute.
    Perturb(PerturbJob),
    /// Deletion/insertion rows an earlier run into the folder already computed.
    Reuse(PerturbationRow),
}

/// Which pixel orders deletion/insertion runs on which images: EigenCAM's on all of them, the
/// baselines on the best `ceil(share · n)` by rank (n: the images it runs on).
#[derive(Clone, Debug, PartialEq)]
pub struct Orders {
    pub baselines: Vec<Method>,
    pub share: f64,
}

impl Orders {
    /// The methods of the image at `position` (0-based, in rank order) of `n`.
    pub fn methods(&self, position: usize, n: usize) -> Vec<Method> {
        let with_baselines = (self.share * n as f64).ceil() as usize;
        let mut methods = vec![Method::EigenCam];
        if position < with_baselines {
            methods.extend(&self.baselines);
        }
        methods
    }
}

/// The decisions of a final ranking (`ranked` in rank order): a subset row for each image of the
/// subset, and, when `orders` says deletion/insertion runs, for each image it runs on (the subset,
/// or all with `rank_all`) the rows an earlier run finished for the methods it needs and a job
/// for each of the others, numbered in deal order. Earlier rows of methods it no longer needs are
/// dropped.
pub fn decide(
    pair: &str,
    ranked: &[&Ranked],
    orders: Option<&Orders>,
    rank_all: bool,
    mut previous: HashMap<String, Vec<PerturbationRow>>,
) -> Vec<Decision> {
    let mut out: Vec<Decision> = ranked
        .iter()
        .filter(|r| r.in_subset)
        .map(|r| Decision::Subset(SubsetRow { model: pair.into(), image_id: r.scored.image_id.clone(), rank: r.rank as i32, rmse: r.scored.rmse() }))
        .collect();
    let Some(orders) = orders else { return out };
    let perturbed: Vec<&&Ranked> = ranked.iter().filter(|r| r.in_subset || rank_all).collect();
    let mut deal = 0;
    for (position, r) in perturbed.iter().enumerate() {
        let needed = orders.methods(position, perturbed.len());
        // `previous` holds both variants of a method or neither.
        let earlier: Vec<PerturbationRow> = previous.remove(&r.scored.image_id).unwrap_or_default();
        for method in needed {
            let done: Vec<&PerturbationRow> = earlier.iter().filter(|row| row.method == method).collect();
            if !done.is_empty() {
                out.extend(done.into_iter().cloned().map(Decision::Reuse));
                continue;
            }
            out.push(Decision::Perturb(PerturbJob {
                shard: r.scored.shard.clone(),
                model: pair.into(),
                rank: r.rank,
                deal,
                scored: r.scored.clone(),
                method,
            }));
            deal += 1;
        }
    }
    out
}

/// Extension trait: the final ranking's decisions, on the pair's writer.
pub trait Decide<'s> {
    /// Once the ranking is final (its input complete), asks `previous` for the rows an earlier
    /// run finished and emits the [`decide`]d records.
    fn decide<P>(self, pair: String, writer: u64, orders: Option<Orders>, rank_all: bool, previous: P) -> StreamVec<'s, u64, Decision>
    where
        P: FnOnce() -> HashMap<String, Vec<PerturbationRow>> + 'static;
}

impl<'s> Decide<'s> for VecCollection<'s, u64, (String, Ranked)> {
    fn decide<P>(self, pair: String, writer: u64, orders: Option<Orders>, rank_all: bool, previous: P) -> StreamVec<'s, u64, Decision>
    where
        P: FnOnce() -> HashMap<String, Vec<PerturbationRow>> + 'static,
    {
        self.inner.unary_frontier(Exchange::new(move |_| writer), "Decide", move |cap, _info| {
            let mut cap = Some(cap);
            let mut previous = Some(previous);
            let mut state: BTreeMap<Ranked, isize> = BTreeMap::new();
            move |(input, frontier), output| {
                input.for_each(|_, data| {
                    for ((_, r), _, diff) in data.drain(..) {
                        *state.entry(r).or_default() += diff;
                    }
                });
                if !frontier.frontier().is_empty() {
                    return;
                }
                let (Some(cap), Some(previous)) = (cap.take(), previous.take()) else { return };
                if state.is_empty() {
                    return; // not this pair's writer, or no images
                }
                let ranked: Vec<&Ranked> = positive(&state).collect();
                output.session(&cap).give_iterator(decide(&pair, &ranked, orders.as_ref(), rank_all, previous()).into_iter());
            }
        })
    }
}
