//! Expansion snapshots: what the macro generates for representative objects, checked against
//! the files in `src/expanded/` so that a change to the generated code shows in review.
//! Rewrite them with `UPDATE_EXPANSIONS=1 cargo test -p durable-macros`.

use std::path::PathBuf;

use proc_macro2::TokenStream;
use quote::quote;

/// Runs the macro as the compiler would, with the runtime at `::durable_runtime`.
fn expand(attr: TokenStream, item: TokenStream) -> syn::File {
    let out = crate::expand(attr, item, syn::parse_quote!(::durable_runtime));
    match syn::parse2(out) {
        Ok(file) => file,
        Err(e) => panic!("the expansion does not parse: {e}"),
    }
}

/// The generated items only: the user's item (always emitted first) is left out.
fn generated(mut file: syn::File) -> String {
    file.items.remove(0);
    prettyplease::unparse(&file)
}

fn check(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/expanded")
        .join(format!("{name}.rs"));
    if std::env::var_os("UPDATE_EXPANSIONS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(e, a)| e != a)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        panic!(
            "the expansion `{name}` changed (first at line {}): review it, then rewrite \
             src/expanded/ with UPDATE_EXPANSIONS=1 cargo test -p durable-macros\n\
             --- expected ({})\n{}\n--- actual\n{}",
            line + 1,
            path.display(),
            expected.lines().nth(line).unwrap_or("<end>"),
            actual.lines().nth(line).unwrap_or("<end>"),
        );
    }
}

#[test]
fn counter_struct() {
    let file = expand(
        quote!(),
        quote! {
            pub struct Counter {
                ctx: Context,
            }
        },
    );
    check("counter_struct", &generated(file));
}

#[test]
fn counter_impl() {
    let file = expand(
        quote!(),
        quote! {
            impl Counter {
                pub fn new(ctx: Context) -> Self {
                    Counter { ctx }
                }

                pub async fn get_counter_value(&self) -> Result<i64> {
                    Ok(self.ctx.storage().get("value")?.unwrap_or(0))
                }

                pub async fn increment(&mut self, amount: i64) -> Result<i64> {
                    let value = self.ctx.storage().get::<i64>("value")?.unwrap_or(0) + amount;
                    self.ctx.storage_mut().put("value", &value)?;
                    Ok(value)
                }
            }
        },
    );
    check("counter_impl", &generated(file));
}

/// Class options, a renamed call, a unit call, a typed error, and the three lifecycle hooks.
#[test]
fn room_with_options_and_hooks() {
    let mut out = generated(expand(
        quote!(name = "Room", renamed_from = "ChatRoom", max_queue = 64),
        quote! {
            pub struct Room {
                ctx: Context,
            }
        },
    ));
    out.push('\n');
    out.push_str(&generated(expand(
        quote!(),
        quote! {
            impl Room {
                pub fn new(ctx: Context) -> Self {
                    Room { ctx }
                }

                /// Posts a message.
                #[durable(rename = "post")]
                pub async fn post_message(&mut self, author: String, text: String) -> Result<u64, RoomError> {
                    todo!()
                }

                pub async fn clear(&mut self) {}

                pub async fn alarm(&mut self, info: AlarmInfo) -> Result<()> {
                    Ok(())
                }

                async fn on_activate(&mut self) -> Result<()> {
                    Ok(())
                }

                async fn on_evict(&mut self) {}
            }
        },
    )));
    check("room_with_options_and_hooks", &out);
}

/// With mistakes, the user's impl is still emitted (IDE completion keeps working), each
/// mistake is a `compile_error!` on the user's tokens, and the valid methods are still
/// generated so that uses of the stub keep type-checking.
#[test]
fn mistakes_keep_the_impl_and_the_valid_methods() {
    let file = expand(
        quote!(),
        quote! {
            impl Counter {
                pub fn new(ctx: Context) -> Self {
                    Counter { ctx }
                }

                pub async fn consume(self) -> i64 {
                    1
                }

                pub async fn greet(&self, name: &str) -> String {
                    name.to_owned()
                }

                pub async fn get(&self) -> Result<i64> {
                    Ok(1)
                }
            }
        },
    );
    check("mistakes", &prettyplease::unparse(&file));
}

#[test]
fn the_struct_and_the_impl_accept_a_crate_path() {
    let file = expand(
        quote!(crate = "dur"),
        quote!(
            impl Counter {
                pub fn new(ctx: Context) -> Self {
                    Counter { ctx }
                }
            }
        ),
    );
    let out = prettyplease::unparse(&file);
    assert!(
        out.contains("impl ::dur::DurableObject for Counter"),
        "{out}"
    );
    assert!(!out.contains("durable_runtime"), "{out}");

    let file = expand(
        quote!(crate = "dur"),
        quote!(
            pub struct Counter;
        ),
    );
    let out = prettyplease::unparse(&file);
    assert!(
        out.contains("::dur::ClassOptions::named(\"Counter\")"),
        "{out}"
    );
    assert!(!out.contains("durable_runtime"), "{out}");
}

#[test]
fn schema_types_are_compact_strings() {
    let cases = [
        (
            quote!(Result<Vec<(u8, String)>>),
            "Result<Vec<(u8, String)>>",
        ),
        (quote!(&'static str), "&'static str"),
        (
            quote!(::std::option::Option<i64>),
            "::std::option::Option<i64>",
        ),
        (quote!([u8; 32]), "[u8; 32]"),
        (
            quote!(Box<dyn Fn(i64) -> i64 + Send>),
            "Box<dyn Fn(i64) -> i64 + Send>",
        ),
        (quote!(()), "()"),
    ];
    for (tokens, expected) in cases {
        let ty: syn::Type = syn::parse2(tokens).unwrap();
        assert_eq!(crate::expand::type_string(&ty), expected);
    }
}
