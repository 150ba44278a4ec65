//! Preparing batches on a background thread while the current step trains.

use std::sync::mpsc::sync_channel;
use std::time::Instant;

use crate::error::{Error, Result};

/// How long the consumer of [`prefetch`] waited for items.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PrefetchStats {
    /// Seconds the consumer spent waiting for (or, without a thread, preparing) items.
    pub wait_seconds: f64,
    /// Items handed over.
    pub items: usize,
}

/// Calls `produce(0..count)` on a background thread, at most `depth` items ahead, and hands
/// each item to `consume` in order on the calling thread. With `depth == 0` everything runs
/// on the calling thread.
///
/// The first error of either side stops both and is returned. The order of items, and so any
/// randomness drawn inside `produce`, does not depend on thread timing.
pub fn prefetch<T, P, C>(
    count: usize,
    depth: usize,
    mut produce: P,
    mut consume: C,
) -> Result<PrefetchStats>
where
    T: Send,
    P: FnMut(usize) -> Result<T> + Send,
    C: FnMut(T) -> Result<()>,
{
    let mut stats = PrefetchStats::default();
    if depth == 0 {
        for i in 0..count {
            let start = Instant::now();
            let item = produce(i)?;
            stats.wait_seconds += start.elapsed().as_secs_f64();
            consume(item)?;
            stats.items += 1;
        }
        return Ok(stats);
    }
    std::thread::scope(|scope| {
        let (sender, receiver) = sync_channel::<Result<T>>(depth);
        scope.spawn(move || {
            for i in 0..count {
                // A panic while preparing a batch becomes an error for the consumer instead of
                // a panic when the scope joins.
                let item = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| produce(i)))
                    .unwrap_or_else(|_| {
                        Err(Error::DataMismatch(format!("preparing batch {i} panicked")))
                    });
                let failed = item.is_err();
                if sender.send(item).is_err() || failed {
                    break;
                }
            }
        });
        for _ in 0..count {
            let start = Instant::now();
            let item = receiver.recv().map_err(|_| {
                Error::DataMismatch("the batch-preparation thread stopped early".into())
            })??;
            stats.wait_seconds += start.elapsed().as_secs_f64();
            consume(item)?;
            stats.items += 1;
        }
        Ok(stats)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_arrive_in_order_with_and_without_a_thread() -> Result<()> {
        for depth in [0, 1, 3] {
            let mut seen = Vec::new();
            let stats = prefetch(
                10,
                depth,
                |i| Ok(i * i),
                |x| {
                    seen.push(x);
                    Ok(())
                },
            )?;
            assert_eq!(seen, (0..10).map(|i| i * i).collect::<Vec<_>>());
            assert_eq!(stats.items, 10);
        }
        Ok(())
    }

    #[test]
    fn errors_from_either_side_stop_both() {
        let err = prefetch(
            10,
            2,
            |i| {
                if i == 4 {
                    Err(Error::DataMismatch("bad".into()))
                } else {
                    Ok(i)
                }
            },
            |_| Ok(()),
        );
        assert!(err.unwrap_err().to_string().contains("bad"));
        let mut consumed = 0;
        let err = prefetch(1000, 2, Ok, |i| {
            consumed += 1;
            if i == 3 {
                Err(Error::DataMismatch("stop".into()))
            } else {
                Ok(())
            }
        });
        assert!(err.unwrap_err().to_string().contains("stop"));
        assert_eq!(consumed, 4);
    }
}
