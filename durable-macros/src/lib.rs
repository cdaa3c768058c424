//! placeholder
use proc_macro::TokenStream;
#[proc_macro_attribute]
pub fn durable_object(_attr: TokenStream, item: TokenStream) -> TokenStream { item }
