//! Preparing batches on background threads while the current step trains.

use std::collections::BTreeMap;
use std::sync::mpsc::{channel, sync_channel};
use std::sync::{Condvar, Mutex};
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

/// The claim window of [`prefetch_parallel`]: items claimed by workers and items handed over.
struct Window {
    claimed: usize,
    consumed: usize,
    stop: bool,
}

/// Stops the workers when the consumer leaves, by error, by panic or at the end.
struct StopOnDrop<'a>(&'a (Mutex<Window>, Condvar));

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        if let Ok(mut w) = self.0 .0.lock() {
            w.stop = true;
        }
        self.0 .1.notify_all();
    }
}

/// Calls `produce(0..count)` on `workers` threads and hands each item to `consume` on the
/// calling thread **in index order**, whatever thread finished first. At most `depth` items
/// (at least one) are claimed ahead of the one being consumed, so memory stays bounded by
/// `depth + 1` items.
/// With `workers == 0` or `depth == 0` everything runs on the calling thread.
///
/// `produce` must depend only on its index (seed any randomness from it): the items, and so
/// a training run, are then the same for every worker count. The first error of either side
/// stops all threads and is returned; a panic while producing becomes an error naming the item.
pub fn prefetch_parallel<T, P, C>(
    count: usize,
    workers: usize,
    depth: usize,
    produce: P,
    mut consume: C,
) -> Result<PrefetchStats>
where
    T: Send,
    P: Fn(usize) -> Result<T> + Sync,
    C: FnMut(T) -> Result<()>,
{
    if workers == 0 || depth == 0 {
        // On the calling thread a panic while producing is an error too, as on a worker.
        let guarded = |i: usize| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| produce(i))).unwrap_or_else(
                |_| Err(Error::DataMismatch(format!("preparing batch {i} panicked"))),
            )
        };
        return prefetch(count, 0, guarded, consume);
    }
    let window = (
        Mutex::new(Window {
            claimed: 0,
            consumed: 0,
            stop: false,
        }),
        Condvar::new(),
    );
    let poisoned = || Error::DataMismatch("a batch-preparation thread panicked".into());
    std::thread::scope(|scope| {
        let (sender, receiver) = channel::<(usize, Result<T>)>();
        for _ in 0..workers.min(count) {
            let sender = sender.clone();
            let (window, produce) = (&window, &produce);
            scope.spawn(move || loop {
                let i = {
                    let Ok(mut w) = window.0.lock() else { return };
                    while !w.stop && w.claimed < count && w.claimed >= w.consumed + depth {
                        w = match window.1.wait(w) {
                            Ok(w) => w,
                            Err(_) => return,
                        };
                    }
                    if w.stop || w.claimed >= count {
                        return;
                    }
                    w.claimed += 1;
                    w.claimed - 1
                };
                let item = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| produce(i)))
                    .unwrap_or_else(|_| {
                        Err(Error::DataMismatch(format!("preparing batch {i} panicked")))
                    });
                let failed = item.is_err();
                if sender.send((i, item)).is_err() || failed {
                    return;
                }
            });
        }
        drop(sender);
        let _stop = StopOnDrop(&window);
        let mut stats = PrefetchStats::default();
        let mut pending: BTreeMap<usize, Result<T>> = BTreeMap::new();
        for expected in 0..count {
            let start = Instant::now();
            let item = loop {
                if let Some(item) = pending.remove(&expected) {
                    break item;
                }
                let (i, item) = receiver.recv().map_err(|_| {
                    Error::DataMismatch("the batch-preparation threads stopped early".into())
                })?;
                pending.insert(i, item);
            };
            stats.wait_seconds += start.elapsed().as_secs_f64();
            let item = item?;
            window.0.lock().map_err(|_| poisoned())?.consumed += 1;
            window.1.notify_all();
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
    fn parallel_items_arrive_in_index_order_for_any_worker_count() -> Result<()> {
        for (workers, depth) in [(0, 0), (1, 1), (4, 4), (4, 2), (3, 8)] {
            let mut seen = Vec::new();
            let stats = prefetch_parallel(
                50,
                workers,
                depth,
                |i| {
                    // Later items finish first on some threads.
                    std::thread::sleep(std::time::Duration::from_micros(
                        ((50 - i) % 7) as u64 * 50,
                    ));
                    Ok(i * 3)
                },
                |x| {
                    seen.push(x);
                    Ok(())
                },
            )?;
            assert_eq!(
                seen,
                (0..50).map(|i| i * 3).collect::<Vec<_>>(),
                "{workers} workers"
            );
            assert_eq!(stats.items, 50);
        }
        Ok(())
    }

    #[test]
    fn parallel_errors_and_panics_stop_every_worker() {
        for workers in [0, 1, 4] {
            let err = prefetch_parallel(
                100,
                workers,
                4,
                |i| {
                    if i == 17 {
                        Err(Error::DataMismatch("bad batch 17".into()))
                    } else {
                        Ok(i)
                    }
                },
                |i| {
                    assert!(i < 17);
                    Ok(())
                },
            );
            assert!(err.unwrap_err().to_string().contains("bad batch 17"));
            let err = prefetch_parallel(
                100,
                workers,
                4,
                |i| if i == 5 { panic!("decoder bug") } else { Ok(i) },
                |_| Ok(()),
            );
            assert!(err.unwrap_err().to_string().contains("batch 5 panicked"));
            let err = prefetch_parallel(100, workers, 3, Ok, |i| {
                if i == 9 {
                    Err(Error::DataMismatch("consumer stops".into()))
                } else {
                    Ok(())
                }
            });
            assert!(err.unwrap_err().to_string().contains("consumer stops"));
        }
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
