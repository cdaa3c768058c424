//! The `#[durable_object]` attribute of the `durable` crates. Use it through
//! `durable_runtime::durable_object`; see the `durable_runtime` docs.
//!
//! The crate is laid out parse → model → expand: `parse.rs` checks every rule and records
//! each mistake on the user's own tokens, `model.rs` is what was declared, `expand.rs`
//! generates code. The user's item is emitted even when there are errors, so IDE completion
//! keeps working.

use proc_macro::TokenStream;
use quote::ToTokens;

mod expand;
mod model;
mod parse;

/// Declares a durable object class (on its struct) or its methods (on its `impl` block).
///
/// On the struct, optional: `#[durable_object(name = "Counter", renamed_from = "OldName",
/// max_queue = 1000)]`. On the impl block: generates the typed stub (`CounterStub`) and the
/// dispatcher. `pub fn new(ctx: Context) -> Self` is the constructor; `pub async fn` methods
/// taking `&self` are shared calls, those taking `&mut self` exclusive calls; other methods
/// stay private helpers. `#[durable(rename = "wire_name")]` on a method sets its wire name.
#[proc_macro_attribute]
pub fn durable_object(attr: TokenStream, item: TokenStream) -> TokenStream {
    let attr = proc_macro2::TokenStream::from(attr);
    let mut errors = parse::Errors::default();
    let mut out = proc_macro2::TokenStream::new();
    match parse::target(item.into(), &mut errors) {
        parse::Target::Struct(item) => {
            let class = parse::class(attr, &item, &mut errors);
            item.to_tokens(&mut out);
            if errors.is_empty() {
                out.extend(expand::class(&class));
            }
        }
        parse::Target::Impl(mut item) => {
            let object = parse::object(attr, &mut item, &mut errors);
            item.to_tokens(&mut out);
            if let (Some(object), true) = (object, errors.is_empty()) {
                out.extend(expand::object(&object));
            }
        }
        parse::Target::Other(tokens) => out.extend(tokens),
    }
    out.extend(errors.into_compile_errors());
    out.into()
}
