//! From tokens to the model: every rule is checked here, each error on the user's tokens.
//! Errors accumulate, so one build shows every mistake.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::{
    Attribute, FnArg, GenericArgument, ImplItem, ImplItemFn, Item, ItemImpl, ItemStruct, Pat,
    PathArguments, ReturnType, Type, Visibility,
};

use crate::model::{Access, Arg, Class, Method, Object};

/// An error accumulator (after serde's `Ctxt`).
#[derive(Default)]
pub struct Errors {
    errors: Vec<syn::Error>,
}

impl Errors {
    pub fn push(&mut self, span: impl Spanned, message: impl std::fmt::Display) {
        self.errors.push(syn::Error::new(span.span(), message));
    }

    pub fn push_error(&mut self, err: syn::Error) {
        self.errors.push(err);
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn into_compile_errors(self) -> TokenStream {
        self.errors
            .into_iter()
            .map(|e| e.to_compile_error())
            .collect()
    }
}

const CLASS_OPTIONS: &str = "`name = \"..\"`, `renamed_from = \"..\"`, `max_queue = N`";
const METHOD_OPTIONS: &str = "`rename = \"..\"`";

/// What the attribute was put on.
pub enum Target {
    Struct(ItemStruct),
    Impl(ItemImpl),
    /// Anything else: the item is emitted unchanged beside the error.
    Other(TokenStream),
}

pub fn target(item: TokenStream, errors: &mut Errors) -> Target {
    let parsed: Item = match syn::parse2(item.clone()) {
        Ok(item) => item,
        Err(e) => {
            errors.push_error(e);
            return Target::Other(item);
        }
    };
    let wrong = |what: &str| {
        format!("#[durable_object] goes on a struct (the class) or on its inherent `impl` block (its methods), not on {what}")
    };
    match parsed {
        Item::Struct(s) => Target::Struct(s),
        Item::Impl(i) => Target::Impl(i),
        Item::Trait(t) => {
            errors.push(t.trait_token, wrong("a trait"));
            Target::Other(item)
        }
        Item::Fn(f) => {
            errors.push(f.sig.fn_token, wrong("a function"));
            Target::Other(item)
        }
        Item::Enum(e) => {
            errors.push(e.enum_token, wrong("an enum"));
            Target::Other(item)
        }
        other => {
            errors.push(&other, wrong("this item"));
            Target::Other(item)
        }
    }
}

/// Parses `name = "..", renamed_from = "..", max_queue = N` on the struct.
pub fn class(attr: TokenStream, item: &ItemStruct, errors: &mut Errors) -> Class {
    let mut class = Class {
        ident: item.ident.clone(),
        name: None,
        renamed_from: None,
        max_queue: None,
    };
    if !item.generics.params.is_empty() {
        errors.push(
            &item.generics,
            "a durable object class cannot be generic: each class has one name and one storage; \
             make a concrete struct per class",
        );
    }
    let parser = syn::meta::parser(|meta| {
        let key = meta
            .path
            .get_ident()
            .map(|i| i.to_string())
            .unwrap_or_default();
        match key.as_str() {
            "name" => class.name = Some(meta.value()?.parse()?),
            "renamed_from" => class.renamed_from = Some(meta.value()?.parse()?),
            "max_queue" => {
                let lit: syn::LitInt = meta.value()?.parse()?;
                match lit.base10_parse::<usize>() {
                    Ok(0) => {
                        return Err(syn::Error::new(lit.span(), "max_queue must be at least 1"))
                    }
                    Ok(_) => class.max_queue = Some(lit),
                    Err(e) => return Err(e),
                }
            }
            "rename" => {
                return Err(meta.error(format!(
                    "`rename` is a method option: put #[durable(rename = \"..\")] on the method; \
                     the struct takes {CLASS_OPTIONS}"
                )))
            }
            _ => {
                return Err(meta.error(format!(
                    "unknown class option `{}`; the valid options are {CLASS_OPTIONS}",
                    meta.path.to_token_stream()
                )))
            }
        }
        Ok(())
    });
    if let Err(e) = syn::parse::Parser::parse2(parser, attr) {
        errors.push_error(e);
    }
    for lit in [&class.name, &class.renamed_from].into_iter().flatten() {
        if lit.value().is_empty() {
            errors.push(lit, "a class name cannot be empty");
        }
    }
    class
}

/// Validates the impl block and extracts its methods. Removes our method attributes from
/// `item` so the user's impl can be emitted as it is.
pub fn object(attr: TokenStream, item: &mut ItemImpl, errors: &mut Errors) -> Option<Object> {
    if !attr.is_empty() {
        errors.push(
            &attr,
            format!(
                "class options go on the struct: #[durable_object({attr})] on `struct ..`; \
                 the impl block takes no options"
            ),
        );
    }
    if let Some((_, path, _)) = &item.trait_ {
        errors.push(
            path,
            "#[durable_object] goes on the class's inherent impl block (`impl Counter { .. }`), \
             not on a trait impl",
        );
        return None;
    }
    if !item.generics.params.is_empty() {
        errors.push(
            &item.generics,
            "a durable object class cannot be generic: make a concrete type per class",
        );
    }
    let ident = match &*item.self_ty {
        Type::Path(p) if p.qself.is_none() && p.path.segments.len() == 1 => {
            let seg = &p.path.segments[0];
            if !matches!(seg.arguments, PathArguments::None) {
                errors.push(&seg.arguments, "a durable object class cannot be generic");
            }
            seg.ident.clone()
        }
        other => {
            errors.push(
                other,
                "#[durable_object] needs `impl TypeName { .. }` with a plain type name",
            );
            return None;
        }
    };

    let mut vis = None;
    let mut methods: Vec<Method> = Vec::new();
    for impl_item in &mut item.items {
        let ImplItem::Fn(f) = impl_item else { continue };
        let rename = take_method_options(&mut f.attrs, errors);
        if f.sig.ident == "new" && f.sig.receiver().is_none() {
            check_new(f, errors);
            vis = Some(f.vis.clone());
            if let Some(rename) = rename {
                errors.push(
                    rename.1,
                    "`new` is the constructor, not a call: it cannot be renamed",
                );
            }
            continue;
        }
        if !matches!(f.vis, Visibility::Public(_)) {
            if let Some((_, span)) = rename {
                errors.push(
                    span,
                    "only `pub async fn` methods are calls; a private method cannot be renamed",
                );
            }
            continue;
        }
        if let Some(method) = method(f, rename, errors) {
            methods.push(method);
        }
    }
    let Some(vis) = vis else {
        errors.push(
            &item.self_ty,
            format!(
                "a durable object needs a constructor: add `pub fn new(ctx: ::durable_runtime::Context) -> Self` to `impl {ident}`"
            ),
        );
        return None;
    };
    for (i, m) in methods.iter().enumerate() {
        if let Some(first) = methods[..i].iter().find(|o| o.wire_name == m.wire_name) {
            errors.push(
                m.span,
                format!(
                    "two methods have the wire name `{}` (`{}` and `{}`): give one another name with #[durable(rename = \"..\")]",
                    m.wire_name, first.ident, m.ident
                ),
            );
        }
    }
    Some(Object {
        ident,
        vis,
        methods,
    })
}

/// Removes `#[durable(..)]` from a method's attributes and parses it.
fn take_method_options(attrs: &mut Vec<Attribute>, errors: &mut Errors) -> Option<(String, Span)> {
    let mut rename = None;
    let mut kept = Vec::with_capacity(attrs.len());
    for attr in attrs.drain(..) {
        if !attr.path().is_ident("durable") {
            kept.push(attr);
            continue;
        }
        let result = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("rename") {
                let lit: syn::LitStr = meta.value()?.parse()?;
                if lit.value().is_empty() {
                    return Err(syn::Error::new(lit.span(), "a wire name cannot be empty"));
                }
                rename = Some((lit.value(), lit.span()));
                Ok(())
            } else if ["name", "renamed_from", "max_queue"]
                .iter()
                .any(|k| meta.path.is_ident(k))
            {
                Err(meta.error(format!(
                    "`{}` is a class option: put it in #[durable_object(..)] on the struct; methods take {METHOD_OPTIONS}",
                    meta.path.to_token_stream()
                )))
            } else {
                Err(meta.error(format!(
                    "unknown method option `{}`; the valid option is {METHOD_OPTIONS}",
                    meta.path.to_token_stream()
                )))
            }
        });
        if let Err(e) = result {
            errors.push_error(e);
        }
    }
    *attrs = kept;
    rename
}

fn check_new(f: &ImplItemFn, errors: &mut Errors) {
    let sig = &f.sig;
    if sig.asyncness.is_some() {
        errors.push(
            sig.asyncness,
            "`new` must not be async: it runs at each activation; do async set-up in a method",
        );
    }
    if !sig.generics.params.is_empty() {
        errors.push(
            &sig.generics,
            "`new` cannot be generic: it is `pub fn new(ctx: Context) -> Self`",
        );
    }
    if sig.inputs.len() != 1 {
        errors.push(
            &sig.inputs,
            format!(
                "`new` takes exactly one argument, the context: `pub fn new(ctx: Context) -> Self` (it has {})",
                sig.inputs.len()
            ),
        );
    }
    if matches!(sig.output, ReturnType::Default) {
        errors.push(
            &sig.ident,
            "`new` must return the object: `pub fn new(ctx: Context) -> Self`",
        );
    }
}

fn method(f: &ImplItemFn, rename: Option<(String, Span)>, errors: &mut Errors) -> Option<Method> {
    let sig = &f.sig;
    let before = errors.errors.len();
    let access = match sig.receiver() {
        Some(r) if r.reference.is_some() && r.colon_token.is_none() => {
            if r.mutability.is_some() {
                Access::Exclusive
            } else {
                Access::Shared
            }
        }
        Some(r) => {
            errors.push(
                r,
                "a durable object method takes `&self` (a shared call) or `&mut self` (an exclusive call), not `self` by value",
            );
            Access::Shared
        }
        None => {
            errors.push(
                &sig.ident,
                format!(
                    "`pub fn {}` has no receiver: durable object methods take `&self` or `&mut self`; make it private or an associated function outside this impl",
                    sig.ident
                ),
            );
            Access::Shared
        }
    };
    if sig.asyncness.is_none() {
        errors.push(
            sig.fn_token,
            format!(
                "`pub fn {}` must be `pub async fn`: public methods are calls of the stub; make helpers private",
                sig.ident
            ),
        );
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.push(
            &sig.generics,
            "a durable object method cannot be generic: its arguments cross the wire as concrete serde types",
        );
    }
    let mut args = Vec::new();
    for (i, input) in sig.inputs.iter().enumerate() {
        let FnArg::Typed(pat) = input else { continue };
        check_wire_type(&pat.ty, "argument", errors);
        let ident = match &*pat.pat {
            Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => p.ident.clone(),
            _ => syn::Ident::new(&format!("__arg{i}"), pat.pat.span()),
        };
        args.push(Arg {
            ident,
            ty: (*pat.ty).clone(),
        });
    }
    let (output, returns_result) = match &sig.output {
        ReturnType::Default => (syn::parse_quote!(()), false),
        ReturnType::Type(_, ty) => {
            check_wire_type(ty, "return", errors);
            ((**ty).clone(), is_result(ty))
        }
    };
    if errors.errors.len() > before {
        return None;
    }
    let docs = f
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("doc") || a.path().is_ident("deprecated"))
        .cloned()
        .collect();
    Some(Method {
        ident: sig.ident.clone(),
        wire_name: rename
            .map(|(name, _)| name)
            .unwrap_or_else(|| sig.ident.to_string()),
        access,
        args,
        output,
        returns_result,
        docs,
        span: sig.ident.span(),
    })
}

/// Types that cannot cross the wire: `impl Trait`, `_`, borrowed references.
fn check_wire_type(ty: &Type, what: &str, errors: &mut Errors) {
    match ty {
        Type::ImplTrait(t) => errors.push(
            t,
            format!("an {what} type cannot be `impl Trait`: calls cross the wire, so name a concrete serde type"),
        ),
        Type::Infer(t) => errors.push(t, format!("an {what} type cannot be `_`: name a concrete serde type")),
        Type::Reference(r) if !is_static(r) => errors.push(
            r,
            format!("an {what} type cannot borrow: calls cross the wire and run later; take an owned type (`String` for `&str`, `Vec<T>` for `&[T]`)"),
        ),
        Type::Path(p) => {
            for seg in &p.path.segments {
                if let PathArguments::AngleBracketed(a) = &seg.arguments {
                    for arg in &a.args {
                        match arg {
                            GenericArgument::Type(t) => check_wire_type(t, what, errors),
                            GenericArgument::Lifetime(l) if l.ident != "static" => errors.push(
                                l,
                                format!("an {what} type cannot borrow (lifetime `{l}`): take an owned type"),
                            ),
                            _ => {}
                        }
                    }
                }
            }
        }
        Type::Tuple(t) => t.elems.iter().for_each(|t| check_wire_type(t, what, errors)),
        Type::Array(a) => check_wire_type(&a.elem, what, errors),
        Type::Paren(p) => check_wire_type(&p.elem, what, errors),
        _ => {}
    }
}

fn is_static(r: &syn::TypeReference) -> bool {
    r.lifetime.as_ref().is_some_and(|l| l.ident == "static")
}

fn is_result(ty: &Type) -> bool {
    match ty {
        Type::Path(p) => p.path.segments.last().is_some_and(|s| s.ident == "Result"),
        _ => false,
    }
}
