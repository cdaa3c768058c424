//! An object's mailbox: a bounded FIFO queue of envelopes with one receiver, its actor.
//!
//! Small on purpose. A live object is mostly idle, and a million of them must fit in memory:
//! an empty mailbox is one allocation of about a hundred bytes. The first queued envelope
//! sits in an inline slot and only a second one waiting at once allocates (tokio's bounded
//! channel would allocate a block of 32 slots and four cache-padded fields per object).
//! One mutex guards everything; it is held for a few instructions and never across user code.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// Why an envelope was not queued; the envelope comes back.
pub(crate) enum SendError<E> {
    /// The queue holds its bound already.
    Full(E),
    /// The mailbox was closed: its actor has left or is leaving.
    Closed(E),
}

pub(crate) struct Mailbox<E> {
    state: Mutex<State<E>>,
}

struct State<E> {
    /// The oldest queued envelope, when there is one; `rest` holds the younger ones.
    head: Option<E>,
    rest: VecDeque<E>,
    /// The actor waiting for an envelope.
    waker: Option<Waker>,
    closed: bool,
}

impl<E> State<E> {
    fn len(&self) -> usize {
        usize::from(self.head.is_some()) + self.rest.len()
    }
}

impl<E> Mailbox<E> {
    /// A mailbox holding `first`.
    pub(crate) fn with_first(first: E) -> Mailbox<E> {
        Mailbox {
            state: Mutex::new(State {
                head: Some(first),
                rest: VecDeque::new(),
                waker: None,
                closed: false,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State<E>> {
        // Nothing panics while the lock is held.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `envelope` unless `bound` envelopes wait already or the mailbox is closed.
    pub(crate) fn try_send(&self, envelope: E, bound: usize) -> Result<(), SendError<E>> {
        let mut state = self.state();
        if state.closed {
            return Err(SendError::Closed(envelope));
        }
        if state.len() >= bound {
            return Err(SendError::Full(envelope));
        }
        if state.head.is_none() && state.rest.is_empty() {
            state.head = Some(envelope);
        } else {
            state.rest.push_back(envelope);
        }
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// The next envelope; `None` once the mailbox is closed and empty.
    pub(crate) fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Option<E>> {
        let mut state = self.state();
        if let Some(envelope) = state.head.take().or_else(|| state.rest.pop_front()) {
            return Poll::Ready(Some(envelope));
        }
        if state.closed {
            return Poll::Ready(None);
        }
        match &mut state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Waits for the next envelope; `None` once the mailbox is closed and empty.
    pub(crate) async fn recv(&self) -> Option<E> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Takes the next envelope if one is queued.
    #[cfg(test)]
    pub(crate) fn try_recv(&self) -> Option<E> {
        let mut state = self.state();
        state.head.take().or_else(|| state.rest.pop_front())
    }

    /// Refuses new envelopes; the queued ones are still received.
    pub(crate) fn close(&self) {
        let waker = {
            let mut state = self.state();
            state.closed = true;
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Closes the mailbox if it is empty; `false` (and still open) if something waits.
    pub(crate) fn close_if_empty(&self) -> bool {
        let mut state = self.state();
        if state.len() > 0 {
            return false;
        }
        state.closed = true;
        // Frees the memory a burst of calls left behind.
        state.rest = VecDeque::new();
        true
    }

    /// How many envelopes wait.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.state().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn received(mailbox: &Mailbox<u32>) -> Vec<u32> {
        std::iter::from_fn(|| mailbox.try_recv()).collect()
    }

    #[test]
    fn keeps_order_across_the_inline_slot() {
        let mailbox = Mailbox::with_first(0);
        for i in 1..5 {
            assert!(mailbox.try_send(i, 100).is_ok());
        }
        assert_eq!(mailbox.try_recv(), Some(0));
        // The slot is empty but older envelopes wait behind it: new ones go after them.
        assert!(mailbox.try_send(5, 100).is_ok());
        assert_eq!(received(&mailbox), vec![1, 2, 3, 4, 5]);
        assert!(mailbox.try_send(6, 100).is_ok());
        assert!(mailbox.try_send(7, 100).is_ok());
        assert_eq!(received(&mailbox), vec![6, 7]);
    }

    #[test]
    fn refuses_past_the_bound_and_after_close() {
        let mailbox = Mailbox::with_first(0);
        assert!(mailbox.try_send(1, 3).is_ok());
        assert!(mailbox.try_send(2, 3).is_ok());
        assert!(matches!(mailbox.try_send(3, 3), Err(SendError::Full(3))));
        assert_eq!(mailbox.len(), 3);
        assert!(!mailbox.close_if_empty());
        mailbox.close();
        assert!(matches!(mailbox.try_send(4, 3), Err(SendError::Closed(4))));
        // Closed, but what was queued is still delivered.
        assert_eq!(received(&mailbox), vec![0, 1, 2]);
        assert!(mailbox.close_if_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wakes_the_receiver_and_ends_when_closed() {
        let mailbox = Arc::new(Mailbox::with_first(0u32));
        let rx = mailbox.clone();
        let receiver = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(v) = rx.recv().await {
                got.push(v);
            }
            got
        });
        for i in 1..=1000 {
            while mailbox.try_send(i, 8).is_err() {
                tokio::task::yield_now().await;
            }
        }
        mailbox.close();
        assert_eq!(receiver.await.unwrap(), (0..=1000).collect::<Vec<_>>());
    }
}
