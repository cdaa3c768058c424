//! Call cycles: A calls B, which calls A while A is in an exclusive call. A waits for B, B
//! waits for A: a deadlock. Each call runs with its chain of callers in a task-local; a stub
//! refuses a call to an object already in the chain (unless both calls are shared, which can
//! run side by side) with a [`Cycle`](crate::ErrorKind::Cycle) error naming the cycle.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::error::{Error, Result};
use crate::id::ObjectId;
use crate::transport::frame::{ChainLink, MAX_CHAIN_LINKS};

// The frame of the call being polled on this thread. Set only while a call's future is
// polled (see [`Scoped`]), so it follows the call wherever its task runs: a task-local, at
// the cost of setting one pointer per poll.
scoped_tls::scoped_thread_local!(static CURRENT: Frame);

/// The call running in this task: its object and the chain that called it.
#[derive(Clone)]
pub(crate) struct Frame {
    pub(crate) class: &'static str,
    pub(crate) id: ObjectId,
    pub(crate) exclusive: bool,
    pub(crate) parent: Option<Arc<Link>>,
}

/// One caller in a chain, innermost first. Links that arrived from another process carry
/// their class name as sent.
pub(crate) struct Link {
    class: Cow<'static, str>,
    id: ObjectId,
    exclusive: bool,
    parent: Option<Arc<Link>>,
}

impl Frame {
    fn to_link(&self) -> Arc<Link> {
        Arc::new(Link {
            class: Cow::Borrowed(self.class),
            id: self.id.clone(),
            exclusive: self.exclusive,
            parent: self.parent.clone(),
        })
    }
}

fn describe(class: &str, id: &ObjectId) -> String {
    match id.name() {
        Some(name) => format!("{class} {name:?}"),
        None => format!("{class} {}", &id.to_string()[..16]),
    }
}

/// The chain of the call running in this task (if this task runs an object's call), checked
/// against a new call to `id` (of the class `class` names): `Err` if that call would close a
/// cycle. Outside an object's call this is one thread-local check; the class's name and the
/// cycle's description are only made for an error.
pub(crate) fn caller_chain(
    class: impl FnOnce() -> &'static str,
    id: &ObjectId,
    exclusive: bool,
) -> Result<Option<Arc<Link>>> {
    if !CURRENT.is_set() {
        return Ok(None);
    }
    let chain = CURRENT.with(Frame::to_link);
    let mut link = Some(&chain);
    while let Some(l) = link {
        // An ID's bytes carry its class's tag: equal IDs are of the same class.
        if l.id == *id && (l.exclusive || exclusive) {
            return Err(cycle_error(class(), id, &chain, l));
        }
        link = l.parent.as_ref();
    }
    Ok(Some(chain))
}

/// The error for a call to `class`/`id` whose caller chain `chain` already holds it, busy,
/// at `busy`.
fn cycle_error(class: &str, id: &ObjectId, chain: &Arc<Link>, busy: &Link) -> Error {
    let mut path = vec![describe(class, id)];
    let mut link = Some(chain);
    while let Some(l) = link {
        path.push(describe(&l.class, &l.id));
        if std::ptr::eq::<Link>(&**l, busy) {
            break;
        }
        link = l.parent.as_ref();
    }
    path.reverse();
    let busy = if busy.exclusive {
        "an exclusive"
    } else {
        "a shared"
    };
    Error::cycle(format!(
        "{} ({} is in {busy} call waiting on this chain, so it cannot take this call until that call returns)",
        path.join(" -> "),
        describe(class, id)
    ))
}

/// A chain as it crosses the wire, innermost first.
pub(crate) fn to_wire(chain: &Option<Arc<Link>>) -> Vec<ChainLink<'_>> {
    let mut links = Vec::new();
    let mut link = chain.as_ref();
    while let Some(l) = link {
        links.push(ChainLink {
            class: &l.class,
            object: *l.id.as_bytes(),
            name: l.id.name(),
            exclusive: l.exclusive,
        });
        link = l.parent.as_ref();
    }
    links
}

/// A chain that arrived from another process. Its IDs are not checked against classes
/// (they may be of classes this process does not have); a chain longer than
/// [`MAX_CHAIN_LINKS`] is refused.
pub(crate) fn from_wire(links: &[ChainLink<'_>]) -> Result<Option<Arc<Link>>> {
    if links.len() > MAX_CHAIN_LINKS {
        return Err(Error::invalid_argument(format!(
            "a call chain of {} callers is over the limit of {MAX_CHAIN_LINKS}",
            links.len()
        )));
    }
    let mut chain = None;
    for l in links.iter().rev() {
        let id = ObjectId::from_raw(l.object, l.name);
        chain = Some(Arc::new(Link {
            class: Cow::Owned(l.class.to_owned()),
            id,
            exclusive: l.exclusive,
            parent: chain,
        }));
    }
    Ok(chain)
}

pin_project_lite::pin_project! {
    /// A call's future, polled with its frame as the current one.
    pub(crate) struct Scoped<F> {
        frame: Frame,
        #[pin]
        fut: F,
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let fut = this.fut;
        CURRENT.set(this.frame, || fut.poll(cx))
    }
}

/// Runs `fut` as the call described by `frame`.
pub(crate) fn scope<F: Future>(frame: Frame, fut: F) -> Scoped<F> {
    Scoped { frame, fut }
}
