//! Data parallelism inside one timely worker. A worker owns `threads` cores: libtorch's intra-op
//! pool uses them during a forward, but the per-image work between forwards (decode, EigenCAM,
//! WSOL, statistics) would run on one of them while the others idle. [`par_map`] spreads each
//! message over the worker's cores. Results keep their input order and every item is computed by
//! the same pure function, so the output is identical for any thread count.

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::StreamVec;
use timely::progress::Timestamp;

/// `items.into_iter().map(f).collect()`, on up to `threads` scoped threads (the calling thread is
/// one of them), in contiguous chunks so the order is kept. A panic in `f` reaches the caller.
pub fn map_ordered<T: Send, R: Send>(items: Vec<T>, threads: usize, f: &(impl Fn(T) -> R + Sync)) -> Vec<R> {
    let threads = threads.min(items.len());
    if threads <= 1 {
        return items.into_iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let mut chunks: Vec<Vec<T>> = Vec::with_capacity(threads);
    let mut rest = items.into_iter();
    loop {
        let c: Vec<T> = rest.by_ref().take(chunk).collect();
        if c.is_empty() {
            break;
        }
        chunks.push(c);
    }
    let mut chunks = chunks.into_iter();
    let mine = chunks.next().expect("threads ≥ 2 means at least one item");
    std::thread::scope(|s| {
        let others: Vec<_> = chunks.map(|c| s.spawn(move || c.into_iter().map(f).collect::<Vec<R>>())).collect();
        let mut out: Vec<R> = mine.into_iter().map(f).collect();
        for h in others {
            out.extend(h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
        }
        out
    })
}

/// `map` over a stream, each message's records spread over `threads` cores ([`map_ordered`]).
/// Upstream sends one batch per message, so a message is the natural unit of work to split.
pub fn par_map<'s, T, D, R>(
    stream: StreamVec<'s, T, D>,
    name: &str,
    threads: usize,
    f: impl Fn(D) -> R + Sync + 'static,
) -> StreamVec<'s, T, R>
where
    T: Timestamp,
    D: Send + Clone + 'static,
    R: Send + Clone + 'static,
{
    stream.unary(Pipeline, name, move |_cap, _info| {
        move |input, output| {
            input.for_each(|cap, data| {
                let items = std::mem::take(data);
                output.session(&cap).give_iterator(map_ordered(items, threads, &f).into_iter());
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_for_any_thread_count() {
        let items: Vec<u64> = (0..37).collect();
        let want: Vec<u64> = items.iter().map(|x| x * x + 1).collect();
        for threads in [0, 1, 2, 3, 5, 36, 37, 64] {
            assert_eq!(map_ordered(items.clone(), threads, &|x: u64| x * x + 1), want, "threads {threads}");
        }
        assert_eq!(map_ordered(Vec::<u64>::new(), 4, &|x: u64| x), Vec::<u64>::new());
    }

    #[test]
    fn runs_on_more_than_one_thread() {
        let ids = map_ordered((0..8).collect::<Vec<u32>>(), 2, &|_| std::thread::current().id());
        assert_eq!(ids[0], std::thread::current().id(), "the caller computes the first chunk");
        assert_ne!(ids[0], ids[7], "the second chunk runs on a second thread");
    }

    #[test]
    #[should_panic(expected = "item 5")]
    fn a_panic_reaches_the_caller() {
        map_ordered((0..8).collect::<Vec<u32>>(), 2, &|x| if x == 5 { panic!("item 5") } else { x });
    }

    #[test]
    fn par_map_in_a_dataflow_equals_map() {
        use timely::dataflow::operators::{Capture, ToStream};
        use timely::dataflow::operators::capture::Extract;
        let got = timely::example(|scope| par_map((0..100u32).to_stream(scope), "Square", 3, |x| x * x).capture());
        let mut got: Vec<u32> = got.extract().into_iter().flat_map(|(_, v)| v).collect();
        got.sort();
        assert_eq!(got, (0..100u32).map(|x| x * x).collect::<Vec<_>>());
    }
}
