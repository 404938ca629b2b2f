//! A one-slot wake-up between tasks of one core: `notify` sets a flag and
//! wakes the task waiting in `wait`. No allocation per notification.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

/// Cloneable handle; all clones share the flag.
#[derive(Clone, Debug, Default)]
pub(crate) struct Nudge(Rc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    set: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Nudge {
    /// Wake the waiter (or make its next `wait` return at once).
    pub(crate) fn notify(&self) {
        self.0.set.set(true);
        if let Some(w) = self.0.waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// Wait until notified, then clear the flag.
    pub(crate) async fn wait(&self) {
        poll_fn(|cx| {
            if self.0.set.replace(false) {
                Poll::Ready(())
            } else {
                let mut slot = self.0.waker.borrow_mut();
                match slot.as_ref() {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => *slot = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        })
        .await;
    }
}
