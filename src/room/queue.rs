//! A member's outbound queue: filled by the rooms under their lock, drained by the session.
//!
//! One per connection, so what it keeps while empty is memory every idle session pays.
//! tokio's unbounded channel allocates 32-slot blocks and keeps up to a few of them once a
//! burst has passed (about 1.5 KiB per member after a mass log-in); this queue keeps a few
//! slots at most, and its items are taken in batches under one short lock. It also carries
//! the member's removal signal, which interrupts a session blocked writing to a peer that
//! does not read.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};

/// Slots an empty queue keeps: a member receiving one line at a time reuses them, a drained
/// backlog gives its memory back.
const KEEP_SLOTS: usize = 4;

struct State<T> {
    items: VecDeque<T>,
    /// The session waiting for an item.
    waker: Option<Waker>,
    sender_alive: bool,
    receiver_alive: bool,
    /// Set once the rooms removed the member (after its last item is queued).
    removed: bool,
    /// The session waiting for the removal.
    removal_waker: Option<Waker>,
}

type Shared<T> = Arc<Mutex<State<T>>>;

fn lock<T>(shared: &Shared<T>) -> MutexGuard<'_, State<T>> {
    // Nothing panics while holding it; the items stay consistent either way.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// A new queue's two ends.
pub fn queue<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Mutex::new(State {
        items: VecDeque::new(),
        waker: None,
        sender_alive: true,
        receiver_alive: true,
        removed: false,
        removal_waker: None,
    }));
    (
        Sender {
            shared: Arc::clone(&shared),
        },
        Receiver { shared },
    )
}

/// The rooms' end; dropping it ends the queue once the items in it are taken.
pub struct Sender<T> {
    shared: Shared<T>,
}

/// The receiving end is gone: the item comes back.
#[derive(Debug)]
pub struct Closed<T>(pub T);

impl<T> Sender<T> {
    /// Appends an item and wakes the session if it waits.
    pub fn send(&self, item: T) -> Result<(), Closed<T>> {
        let waker = {
            let mut state = lock(&self.shared);
            if !state.receiver_alive {
                return Err(Closed(item));
            }
            state.items.push_back(item);
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }
}

impl<T> Sender<T> {
    /// Signals the removal to [`Removal::wait`] (whatever is queued can still be taken).
    pub fn remove(&self) {
        let wakers = {
            let mut state = lock(&self.shared);
            state.removed = true;
            [state.waker.take(), state.removal_waker.take()]
        };
        for waker in wakers.into_iter().flatten() {
            waker.wake();
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut state = lock(&self.shared);
            state.sender_alive = false;
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The session's end.
pub struct Receiver<T> {
    shared: Shared<T>,
}

impl<T> Receiver<T> {
    /// Takes the next item if there is one.
    pub fn try_recv(&mut self) -> Option<T> {
        let mut state = lock(&self.shared);
        let item = state.items.pop_front();
        release_if_drained(&mut state.items);
        item
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        lock(&self.shared).items.is_empty()
    }

    /// A handle on the removal signal that does not borrow the receiver.
    pub fn removal(&self) -> Removal<T> {
        Removal {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Waits for the next item; `None` once the sender is gone and everything is taken.
    /// Cancel-safe: an item is only taken when it is returned.
    pub async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| {
            let mut state = lock(&self.shared);
            if let Some(item) = state.items.pop_front() {
                release_if_drained(&mut state.items);
                return Poll::Ready(Some(item));
            }
            if !state.sender_alive {
                return Poll::Ready(None);
            }
            match &mut state.waker {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let (items, wakers) = {
            let mut state = lock(&self.shared);
            state.receiver_alive = false;
            // The session's wakers would keep its finished task allocated until the rooms
            // drop their end.
            let wakers = [state.waker.take(), state.removal_waker.take()];
            (std::mem::take(&mut state.items), wakers)
        };
        // Dropped outside the lock: the items may be the last owners of shared lines.
        drop((items, wakers));
    }
}

/// The member's removal signal (see [`Sender::remove`]).
pub struct Removal<T> {
    shared: Shared<T>,
}

impl<T> Removal<T> {
    /// True once the member is removed.
    pub fn happened(&self) -> bool {
        lock(&self.shared).removed
    }

    /// Waits for the removal. Cancel-safe.
    pub async fn wait(&self) {
        poll_fn(|cx| {
            let mut state = lock(&self.shared);
            if state.removed {
                return Poll::Ready(());
            }
            match &mut state.removal_waker {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await
    }
}

fn release_if_drained<T>(items: &mut VecDeque<T>) {
    if items.is_empty() && items.capacity() > KEEP_SLOTS {
        *items = VecDeque::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn items_come_out_in_order_then_none_once_the_sender_is_gone() {
        let (tx, mut rx) = queue();
        tx.send(1).unwrap();
        tx.send(2).unwrap();
        drop(tx);
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(rx.try_recv(), Some(2));
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken_by_a_send() {
        let (tx, mut rx) = queue();
        let waiter = tokio::spawn(async move { rx.recv().await });
        tokio::task::yield_now().await;
        tx.send("line").unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .unwrap();
        assert_eq!(got, Some("line"));
    }

    #[test]
    fn sending_to_a_dropped_receiver_gives_the_item_back() {
        let (tx, rx) = queue();
        drop(rx);
        assert!(matches!(tx.send(7), Err(Closed(7))));
    }

    #[tokio::test]
    async fn removal_wakes_its_waiter_and_leaves_the_last_items() {
        let (tx, mut rx) = queue();
        let removal = rx.removal();
        let waiter = tokio::spawn(async move { removal.wait().await });
        tokio::task::yield_now().await;
        tx.send("bye").unwrap();
        assert!(!rx.removal().happened());
        tx.remove();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .unwrap();
        assert!(rx.removal().happened());
        assert_eq!(rx.try_recv(), Some("bye"));
    }

    #[test]
    fn a_drained_backlog_gives_its_memory_back() {
        let (tx, mut rx) = queue();
        for i in 0..1000 {
            tx.send(i).unwrap();
        }
        while rx.try_recv().is_some() {}
        assert!(lock(&rx.shared).items.capacity() <= KEEP_SLOTS);
        tx.send(1).unwrap();
        assert_eq!(rx.try_recv(), Some(1));
        assert!(rx.is_empty());
    }
}
