//! The `#[durable_object]` attribute of the `durable` crates. Use it through
//! `durable_runtime::durable_object`; see the `durable_runtime` docs.
//!
//! The crate is laid out parse → model → expand: `parse.rs` checks every rule and records
//! each mistake on the user's own tokens, `model.rs` is what was declared, `expand.rs`
//! generates code. The user's item is emitted even when there are errors, so IDE completion
//! keeps working.
//!
//! # What the macro generates
//!
//! For the README's counter, the struct attribute
//!
//! ```rust,ignore
//! #[durable_object]
//! pub struct Counter {
//!     ctx: Context,
//! }
//! ```
//!
//! adds, after the struct, the class's options and the `Send + Sync` check on it:
//!
//! ```rust,ignore
#![doc = include_str!("expanded/counter_struct.rs")]
//! ```
//!
//! and the impl attribute
//!
//! ```rust,ignore
//! #[durable_object]
//! impl Counter {
//!     pub fn new(ctx: Context) -> Self {
//!         Counter { ctx }
//!     }
//!
//!     pub async fn get_counter_value(&self) -> Result<i64> {
//!         Ok(self.ctx.storage().get("value")?.unwrap_or(0))
//!     }
//!
//!     pub async fn increment(&mut self, amount: i64) -> Result<i64> {
//!         let value = self.ctx.storage().get::<i64>("value")?.unwrap_or(0) + amount;
//!         self.ctx.storage_mut().put("value", &value)?;
//!         Ok(value)
//!     }
//! }
//! ```
//!
//! expands to the impl as written, followed by:
//!
//! ```rust,ignore
#![doc = include_str!("expanded/counter_impl.rs")]
//! ```
//!
//! In words:
//! - one enum per kind of call (`&self` calls, `&mut self` calls) with a variant per method
//!   holding its arguments, and one enum of results: calls to local objects move typed values;
//! - `CounterStub`, whose methods have the object's signatures and send a call;
//! - checks placed on the user's tokens: the class is `Send + Sync`, every argument and result
//!   is `Serialize + DeserializeOwned`, every method's future is `Send`;
//! - the class options (from the struct attribute, or the defaults) and one `const` per
//!   method ID, in an inherent impl of the output enum;
//! - `impl DurableObject for Counter`: the class options, the dispatchers, the lifecycle hooks
//!   (`alarm`, `on_activate`, `on_evict`, when the impl has them), `schema()` (each method's
//!   wire name and method ID), and the wire codec: `encode_call`/`decode_call` (the arguments
//!   as a postcard tuple in declaration order) and `encode_output`/`decode_output` (the return
//!   value as declared), keyed by method ID, never by a method's position. The codec goes
//!   through the same wire probe as the checks, so a type that cannot cross the wire is
//!   reported once, on the user's type.
//!
//! These expansions, and those of other representative objects, are checked by the unit tests
//! (`src/tests.rs`) against the files in `src/expanded/`; after a deliberate change, rewrite
//! them with `UPDATE_EXPANSIONS=1 cargo test -p durable-macros` and review the diff.

use proc_macro::TokenStream;
use quote::ToTokens;

mod expand;
mod model;
mod parse;
#[cfg(test)]
mod tests;

/// Declares a durable object class (on its struct) or its methods (on its `impl` block).
///
/// On the struct, optional: `#[durable_object(name = "Counter", renamed_from = "OldName",
/// max_queue = 1000)]`. On the impl block: generates the typed stub (`CounterStub`) and the
/// dispatcher. `pub fn new(ctx: Context) -> Self` is the constructor; `pub async fn` methods
/// taking `&self` are shared calls, those taking `&mut self` exclusive calls; other methods
/// stay private helpers. `#[durable(rename = "wire_name")]` on a method sets its wire name.
///
/// Lifecycle hooks, called by the runtime and not exposed on the stub:
/// `pub async fn alarm(&mut self, info: AlarmInfo) -> Result<()>`,
/// `async fn on_activate(&mut self) -> Result<()>` and `async fn on_evict(&mut self)`.
///
/// Generated code finds the runtime under the name your Cargo.toml gives `durable-runtime`;
/// `crate = "path"` (on the struct and on the impl) overrides it.
#[proc_macro_attribute]
pub fn durable_object(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(attr.into(), item.into(), runtime_path()).into()
}

/// The whole macro, on `proc_macro2` tokens (so that tests can run it).
fn expand(
    attr: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
    krate: syn::Path,
) -> proc_macro2::TokenStream {
    let mut errors = parse::Errors::default();
    let mut out = proc_macro2::TokenStream::new();
    match parse::target(item, &mut errors) {
        parse::Target::Struct(item) => {
            let class = parse::class(attr, &item, krate, &mut errors);
            item.to_tokens(&mut out);
            if let Some(class) = class {
                out.extend(expand::class(&class));
            }
        }
        parse::Target::Impl(mut item) => {
            let object = parse::object(attr, &mut item, krate, &mut errors);
            item.to_tokens(&mut out);
            if let Some(object) = object {
                out.extend(expand::object(&object));
            }
        }
        parse::Target::Other(tokens) => out.extend(tokens),
    }
    out.extend(errors.into_compile_errors());
    out
}

/// `::durable_runtime`, or the name the user's Cargo.toml gives the `durable-runtime`
/// package (`dur = { package = "durable-runtime", .. }` gives `::dur`).
fn runtime_path() -> syn::Path {
    let renamed = match proc_macro_crate::crate_name("durable-runtime") {
        Ok(proc_macro_crate::FoundCrate::Name(name)) => syn::parse_str::<syn::Ident>(&name).ok(),
        // `Itself`: the runtime's own doctests and examples, which see it as an extern crate.
        Ok(proc_macro_crate::FoundCrate::Itself) | Err(_) => None,
    };
    match renamed {
        Some(ident) => syn::parse_quote!(::#ident),
        None => syn::parse_quote!(::durable_runtime),
    }
}
