//! The contract `#[durable_object]` implements: [`DurableObject`], with the class's
//! [`ClassOptions`], the [`AlarmInfo`] its `alarm` handler receives and the [`Call`] enum its
//! stubs send.
//!
//! This is everything the runtime knows of a class: how to build an instance, how to run
//! each kind of call on it (shared calls on `&self`, exclusive calls and the hooks on
//! `&mut self`), and how its calls and outputs cross the wire. The machinery that runs an
//! object (`actor.rs`) and reaches it (`stub.rs`, `namespace.rs`) knows a class only
//! through this trait.

use std::future::Future;

use crate::context::Context;
use crate::error::Result;
use crate::stub::Stub;
use crate::websocket::{Message, WebSocket};
use crate::wire::MethodSchema;

/// A durable object class. Implemented by `#[durable_object]` on the class's `impl` block;
/// not meant to be implemented by hand.
///
/// The associated types are the generated call and reply enums and the typed stub.
pub trait DurableObject: Send + Sync + Sized + 'static {
    /// The calls taking `&self`.
    #[doc(hidden)]
    type SharedCall: Send + 'static;
    /// The calls taking `&mut self`.
    #[doc(hidden)]
    type ExclusiveCall: Send + 'static;
    /// The return values of every method.
    #[doc(hidden)]
    type Output: Send + 'static;
    /// The typed stub, e.g. `CounterStub` for `Counter`.
    type Stub: From<Stub<Self>> + Clone + Send + Sync + 'static;

    /// The class's options (from `#[durable_object(..)]` on the struct, or defaults).
    fn class_options() -> ClassOptions;

    /// Builds an instance: the class's `new(ctx)`.
    #[doc(hidden)]
    fn activate(ctx: Context) -> Self;

    /// The wire name of a call's method, for errors and traces.
    #[doc(hidden)]
    fn method_name(call: &Call<Self::SharedCall, Self::ExclusiveCall>) -> &'static str;

    /// Runs a shared call.
    #[doc(hidden)]
    fn dispatch_shared(
        &self,
        call: Self::SharedCall,
    ) -> impl Future<Output = Self::Output> + Send + '_;

    /// Runs an exclusive call.
    #[doc(hidden)]
    fn dispatch_exclusive(
        &mut self,
        call: Self::ExclusiveCall,
    ) -> impl Future<Output = Self::Output> + Send + '_;

    /// Runs the class's `alarm` handler; `None` when the class has none.
    #[doc(hidden)]
    fn dispatch_alarm(
        &mut self,
        info: AlarmInfo,
    ) -> impl Future<Output = Option<Result<()>>> + Send + '_ {
        let _ = info;
        async { None }
    }

    /// Runs the class's `websocket_message` handler; `None` when the class has none.
    #[doc(hidden)]
    fn dispatch_websocket_message(
        &mut self,
        ws: WebSocket,
        message: Message,
    ) -> impl Future<Output = Option<Result<()>>> + Send + '_ {
        let _ = (ws, message);
        async { None }
    }

    /// Runs the class's `websocket_close` handler; `None` when the class has none.
    #[doc(hidden)]
    fn dispatch_websocket_close(
        &mut self,
        ws: WebSocket,
        code: u16,
        reason: String,
    ) -> impl Future<Output = Option<Result<()>>> + Send + '_ {
        let _ = (ws, code, reason);
        async { None }
    }

    /// Runs the class's `on_activate` hook, before any call of a fresh instance.
    #[doc(hidden)]
    fn dispatch_activate(&mut self) -> impl Future<Output = Result<()>> + Send + '_ {
        async { Ok(()) }
    }

    /// Runs the class's `on_evict` hook, before an idle instance is dropped.
    #[doc(hidden)]
    fn dispatch_evict(&mut self) -> impl Future<Output = ()> + Send + '_ {
        async {}
    }

    /// The class's calls as they cross the wire: names, wire names, argument and return types.
    fn schema() -> &'static [MethodSchema] {
        &[]
    }

    /// Encodes a call's arguments (postcard, as a tuple in declaration order) into `out`
    /// and returns its method ID ([`MethodSchema::id`]).
    #[doc(hidden)]
    fn encode_call(
        call: &Call<Self::SharedCall, Self::ExclusiveCall>,
        out: &mut Vec<u8>,
    ) -> Result<u64>;

    /// Decodes a call that arrived from the wire: an
    /// [`UnknownMethod`](crate::ErrorKind::UnknownMethod) error for a method ID this class
    /// does not have, an [`InvalidArgument`](crate::ErrorKind::InvalidArgument) error for
    /// arguments that do not decode exactly.
    #[doc(hidden)]
    fn decode_call(method: u64, args: &[u8])
        -> Result<Call<Self::SharedCall, Self::ExclusiveCall>>;

    /// Encodes a call's return value (postcard, the method's return type as declared) into
    /// `out`.
    #[doc(hidden)]
    fn encode_output(output: &Self::Output, out: &mut Vec<u8>) -> Result<()>;

    /// Decodes the return value of method `method` from the wire.
    #[doc(hidden)]
    fn decode_output(method: u64, bytes: &[u8]) -> Result<Self::Output>;
}

/// The options of a class, declared by `#[durable_object(..)]` on its struct.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassOptions {
    /// The class's stable name (default: the type's bare name). IDs and stored data are
    /// bound to it (or to `renamed_from`, see [`ClassOptions::wire_name`]); two classes of one
    /// runtime cannot share it.
    pub name: &'static str,
    /// A former name whose data and IDs this class inherits.
    pub renamed_from: Option<&'static str>,
    /// How many calls may wait in one object's queue before new ones fail as overloaded.
    pub max_queue: usize,
}

impl ClassOptions {
    /// The default queue bound of an object.
    pub const DEFAULT_MAX_QUEUE: usize = 4096;

    /// Default options for a class named `name`.
    pub const fn named(name: &'static str) -> ClassOptions {
        ClassOptions {
            name,
            renamed_from: None,
            max_queue: Self::DEFAULT_MAX_QUEUE,
        }
    }

    /// The name the class's identity on the wire and in storage derives from: its object IDs'
    /// class tag and its method IDs ([`MethodSchema::id`]). That is `renamed_from` when set
    /// (the name the data was first written under), else `name`: a renamed class keeps its
    /// IDs, so peers and stored IDs of the previous build still reach it.
    ///
    /// ```
    /// use durable_runtime::ClassOptions;
    ///
    /// assert_eq!(ClassOptions::named("Score").wire_name(), "Score");
    /// let renamed = ClassOptions { renamed_from: Some("Score"), ..ClassOptions::named("Points") };
    /// assert_eq!(renamed.wire_name(), "Score");
    /// ```
    pub const fn wire_name(&self) -> &'static str {
        match self.renamed_from {
            Some(name) => name,
            None => self.name,
        }
    }
}

/// What an object's `alarm` handler is told about the run.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AlarmInfo {
    /// How many times this alarm already failed (0 on the first run).
    pub retry_count: u32,
    /// `true` when this run retries a failed one.
    pub is_retry: bool,
    /// The named schedule that fired, or `None` for the object's alarm.
    pub schedule: Option<String>,
}

/// A call on its way to an object: shared (`&self`) or exclusive (`&mut self`).
#[doc(hidden)]
pub enum Call<S, E> {
    Shared(S),
    Exclusive(E),
}
