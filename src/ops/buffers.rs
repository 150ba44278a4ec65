//! Large f32 buffers recycled from one training step to the next. A fresh allocation of
//! many megabytes is zero pages from the kernel: every first touch is a page fault. The ops'
//! caches have the same sizes every step, so the previous step's buffer serves the next.

use std::sync::Mutex;

/// Buffers kept for reuse, newest last; the oldest are freed to stay within `keep` buffers
/// and `max_elements` elements in all.
struct BufferPool {
    free: Vec<Vec<f32>>,
    keep: usize,
    max_elements: usize,
}

impl BufferPool {
    const fn new(keep: usize, max_elements: usize) -> Self {
        Self {
            free: Vec::new(),
            keep,
            max_elements,
        }
    }

    fn held(&self) -> usize {
        self.free.iter().map(Vec::len).sum()
    }

    fn take(&mut self, len: usize) -> Option<Vec<f32>> {
        let i = self.free.iter().rposition(|b| b.len() == len)?;
        Some(self.free.remove(i))
    }

    fn give_back(&mut self, buffer: Vec<f32>) {
        if buffer.len() > self.max_elements {
            return;
        }
        while !self.free.is_empty()
            && (self.free.len() == self.keep || self.held() + buffer.len() > self.max_elements)
        {
            self.free.remove(0);
        }
        self.free.push(buffer);
    }
}

/// At most 4 buffers and 32 Mi elements (128 MiB) are kept.
static POOL: Mutex<BufferPool> = Mutex::new(BufferPool::new(4, 32 << 20));

/// A buffer of exactly `len` elements with unspecified contents (zeros when fresh): only for
/// callers that write every element before reading it.
pub(crate) fn take(len: usize) -> Vec<f32> {
    POOL.lock()
        .ok()
        .and_then(|mut pool| pool.take(len))
        .unwrap_or_else(|| vec![0f32; len])
}

/// Hands a buffer back for reuse.
pub(crate) fn give_back(buffer: Vec<f32>) {
    if let Ok(mut pool) = POOL.lock() {
        pool.give_back(buffer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_of_the_right_size_are_reused_and_the_oldest_evicted() {
        let mut pool = BufferPool::new(2, 6);
        let b = vec![7f32; 5];
        let ptr = b.as_ptr();
        pool.give_back(b);
        assert!(pool.take(4).is_none());
        let again = pool.take(5).expect("reused");
        assert_eq!((again.as_ptr(), again[0]), (ptr, 7.0));
        pool.give_back(vec![0.0; 1]);
        pool.give_back(vec![0.0; 2]);
        pool.give_back(vec![0.0; 3]);
        assert!(pool.take(1).is_none(), "the oldest went");
        assert!(pool.take(2).is_some() && pool.take(3).is_some());
        // The element budget: 4 + 3 > 6 evicts the 4, and 7 alone is never kept.
        pool.give_back(vec![0.0; 4]);
        pool.give_back(vec![0.0; 3]);
        assert!(pool.take(4).is_none() && pool.take(3).is_some());
        pool.give_back(vec![0.0; 7]);
        assert!(pool.take(7).is_none());
        assert_eq!(take(3).len(), 3);
    }
}
