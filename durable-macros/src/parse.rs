//! From tokens to the model: every rule is checked here, each error on the user's tokens and
//! naming the fix. Errors accumulate, so one build shows every mistake; a mistake is reported
//! once, and the part it spoils is left out of the model so it causes no second error.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{
    Attribute, FnArg, GenericArgument, Ident, ImplItem, ImplItemFn, Item, ItemImpl, ItemStruct,
    LitInt, LitStr, Pat, Path, PathArguments, Receiver, ReturnType, Signature, Type, Visibility,
};

use crate::model::{Access, Arg, Class, Constructor, Hook, HookKind, Method, Object};

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

    fn len(&self) -> usize {
        self.errors.len()
    }

    pub fn into_compile_errors(self) -> TokenStream {
        self.errors
            .into_iter()
            .map(|e| e.to_compile_error())
            .collect()
    }
}

const CLASS_OPTIONS: &str =
    "`name = \"..\"`, `renamed_from = \"..\"`, `max_queue = N`, `crate = \"..\"`";
const IMPL_OPTIONS: &str = "`crate = \"..\"` (the path of durable_runtime, if renamed)";
const METHOD_OPTIONS: &str = "`rename = \"..\"`";
const NEW_SIGNATURE: &str = "pub fn new(ctx: Context) -> Self";

/// The items `#[durable_object]` generates on the class through `DurableObject`: an inherent
/// method of one of these names would shadow them (`Counter::schema()`).
const OBJECT_ITEMS: &[&str] = &[
    "activate",
    "class_options",
    "method_name",
    "dispatch_shared",
    "dispatch_exclusive",
    "dispatch_alarm",
    "dispatch_activate",
    "dispatch_evict",
    "schema",
    "encode_call",
    "decode_call",
    "encode_output",
    "decode_output",
];

/// The methods the stub has through its trait impls, which a call of the same name would
/// shadow: `stub.clone()` would call the object instead of copying the stub.
const STUB_ITEMS: &[&str] = &["clone", "clone_from", "fmt", "from"];

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
        format!(
            "#[durable_object] goes on a struct (the class) or on its inherent `impl` block \
             (its methods), not on {what}"
        )
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
            errors.push(
                e.enum_token,
                format!(
                    "{}; a class is a struct (an enum can be one of its fields)",
                    wrong("an enum")
                ),
            );
            Target::Other(item)
        }
        other => {
            let span = match &other {
                Item::Union(u) => u.union_token.span(),
                Item::Mod(m) => m.mod_token.span(),
                Item::Type(t) => t.type_token.span(),
                _ => other.span(),
            };
            errors.push(span, wrong("this item"));
            Target::Other(item)
        }
    }
}

/// Parses `#[durable_object(name = "..", renamed_from = "..", max_queue = N, crate = "..")]`
/// on the struct. Options in error are left out (defaults apply) after their error. `None`
/// when nothing can be generated (a generic struct).
pub fn class(
    attr: TokenStream,
    item: &ItemStruct,
    krate: Path,
    errors: &mut Errors,
) -> Option<Class> {
    let mut class = Class {
        krate,
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
    let mut seen: Vec<String> = Vec::new();
    let parser = syn::meta::parser(|meta| {
        let key = meta
            .path
            .get_ident()
            .map(|i| i.unraw().to_string())
            .unwrap_or_default();
        if seen.contains(&key) {
            return Err(meta.error(format!("`{key}` is given twice; keep one")));
        }
        match key.as_str() {
            "name" => class.name = Some(non_empty(meta.value()?.parse()?, "a class name")?),
            "renamed_from" => {
                class.renamed_from = Some(non_empty(meta.value()?.parse()?, "a class name")?)
            }
            "max_queue" => {
                let lit: LitInt = meta.value()?.parse()?;
                match lit.base10_parse::<usize>() {
                    Ok(0) => {
                        return Err(syn::Error::new(
                            lit.span(),
                            "max_queue must be at least 1: it is how many calls may wait for one object",
                        ))
                    }
                    Ok(_) => class.max_queue = Some(lit),
                    Err(e) => return Err(e),
                }
            }
            "crate" => class.krate = crate_option(&meta)?,
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
        seen.push(key);
        Ok(())
    });
    if let Err(e) = syn::parse::Parser::parse2(parser, attr) {
        errors.push_error(e);
    }
    item.generics.params.is_empty().then_some(class)
}

fn non_empty(lit: LitStr, what: &str) -> syn::Result<LitStr> {
    if lit.value().is_empty() {
        Err(syn::Error::new(
            lit.span(),
            format!("{what} cannot be empty"),
        ))
    } else {
        Ok(lit)
    }
}

/// `crate = "path"`: where generated code finds the runtime. A path that does not start with
/// `crate`, `self` or `super` names an extern crate: it is made absolute (`::dur`), so that it
/// also resolves under `#![no_implicit_prelude]`.
fn crate_option(meta: &syn::meta::ParseNestedMeta) -> syn::Result<Path> {
    let lit: LitStr = meta.value()?.parse()?;
    let mut path = lit.parse::<Path>().map_err(|_| {
        syn::Error::new(
            lit.span(),
            "`crate` takes the path of the durable_runtime crate, e.g. `crate = \"durable\"` for a \
             dependency renamed to `durable`",
        )
    })?;
    let relative = path.segments.first().is_some_and(|s| {
        ["crate", "self", "super", "Self"]
            .iter()
            .any(|k| s.ident == k)
    });
    if !relative {
        path.leading_colon = Some(Default::default());
    }
    Ok(path)
}

/// Parses the attribute on the impl block: `crate = ".."` only.
fn impl_options(attr: TokenStream, mut krate: Path, errors: &mut Errors) -> Path {
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("crate") {
            krate = crate_option(&meta)?;
            return Ok(());
        }
        let key = meta.path.to_token_stream().to_string();
        if ["name", "renamed_from", "max_queue"].contains(&key.as_str()) {
            // Consume the value so the message shows the whole option.
            let value: syn::Expr = meta.value()?.parse()?;
            return Err(syn::Error::new(
                meta.path.span(),
                format!(
                    "`{key}` is a class option: put #[durable_object({key} = {})] on the struct; \
                     the impl block takes only {IMPL_OPTIONS}",
                    value.to_token_stream()
                ),
            ));
        }
        if key == "rename" {
            return Err(meta.error(
                "`rename` is a method option: put #[durable(rename = \"..\")] on the method",
            ));
        }
        Err(meta.error(format!(
            "unknown option `{key}`; the impl block takes only {IMPL_OPTIONS}, and class options go on the struct"
        )))
    });
    if let Err(e) = syn::parse::Parser::parse2(parser, attr) {
        errors.push_error(e);
    }
    krate
}

/// Validates the impl block and extracts its constructor, calls and hooks. Removes our method
/// attributes from `item` so the user's impl can be emitted as it is. `None` when nothing can
/// be generated (the impl is not for a plain, non-generic type).
pub fn object(
    attr: TokenStream,
    item: &mut ItemImpl,
    krate: Path,
    errors: &mut Errors,
) -> Option<Object> {
    let krate = impl_options(attr, krate, errors);
    if let Some((_, path, _)) = &item.trait_ {
        errors.push(
            path,
            "#[durable_object] goes on the class's inherent impl block (`impl Counter { .. }`), \
             not on a trait impl",
        );
        return None;
    }
    let mut expandable = true;
    if !item.generics.params.is_empty() {
        errors.push(
            &item.generics,
            "a durable object class cannot be generic: each class has one name and one storage; \
             write `impl Counter { .. }` for a concrete type",
        );
        expandable = false;
    }
    let ident = match &*item.self_ty {
        Type::Path(p) if p.qself.is_none() && p.path.segments.len() == 1 => {
            let seg = &p.path.segments[0];
            if !matches!(seg.arguments, PathArguments::None) {
                if expandable {
                    errors.push(
                        &seg.arguments,
                        "a durable object class cannot be generic: each class has one name and \
                         one storage; make a concrete struct per class",
                    );
                }
                expandable = false;
            }
            seg.ident.clone()
        }
        other => {
            errors.push(
                other,
                "#[durable_object] needs `impl TypeName { .. }` with the class's own type name \
                 (define the impl in the struct's module)",
            );
            return None;
        }
    };

    let mut new: Option<(Visibility, Option<Constructor>)> = None;
    let mut methods: Vec<Method> = Vec::new();
    let mut hooks: Vec<Hook> = Vec::new();
    let mut seen_idents: Vec<Ident> = Vec::new();
    for impl_item in &mut item.items {
        let ImplItem::Fn(f) = impl_item else { continue };
        let rename = take_method_options(&mut f.attrs, errors);
        let name = f.sig.ident.unraw().to_string();
        if seen_idents.contains(&f.sig.ident) {
            // rustc reports the duplicate definition itself.
            continue;
        }
        seen_idents.push(f.sig.ident.clone());
        let hook = HookKind::ALL.into_iter().find(|h| h.name() == name);
        if hook.is_some() || name == "new" {
            if let Some(lit) = &rename {
                errors.push(
                    lit,
                    format!("`{name}` is not a call of the stub, so it has no wire name to rename"),
                );
            }
        }
        if name.starts_with("__durable") {
            errors.push(
                &f.sig.ident,
                "names starting with `__durable` are reserved for the code #[durable_object] \
                 generates; rename this method",
            );
            continue;
        }
        if OBJECT_ITEMS.contains(&name.as_str()) {
            errors.push(
                &f.sig.ident,
                format!(
                    "`{name}` collides with `DurableObject::{name}`, which #[durable_object] \
                     generates for `{ident}`; rename the method (a call keeps its wire name with \
                     #[durable(rename = \"{name}\")])"
                ),
            );
            continue;
        }
        if name == "new" && f.sig.receiver().is_none() {
            new = Some((f.vis.clone(), constructor(f, &ident, errors)));
            continue;
        }
        if let Some(kind) = hook {
            if let Some(hook) = lifecycle_hook(f, kind, errors) {
                hooks.push(hook);
            }
            continue;
        }
        if !matches!(f.vis, Visibility::Public(_)) {
            if let Some(lit) = &rename {
                errors.push(
                    lit,
                    "only `pub async fn` methods are calls; a private method has no wire name to \
                     rename (make it `pub` to expose it)",
                );
            }
            continue;
        }
        if STUB_ITEMS.contains(&name.as_str()) {
            errors.push(
                &f.sig.ident,
                format!(
                    "a call named `{name}` would shadow `{name}` of the generated `{ident}Stub` \
                     (its Clone/Debug/From impls): rename the method, and keep the wire name \
                     with #[durable(rename = \"{name}\")] if you need it"
                ),
            );
            continue;
        }
        if let Some(method) = method(f, rename, &ident, errors) {
            methods.push(method);
        }
    }

    let (vis, new) = match new {
        Some(new) => new,
        None => {
            errors.push(
                &item.self_ty,
                format!(
                    "a durable object needs a constructor: add `{NEW_SIGNATURE}` to `impl {ident}` \
                     (it runs at each activation)"
                ),
            );
            (Visibility::Public(Default::default()), None)
        }
    };
    for (i, m) in methods.iter().enumerate() {
        if let Some(first) = methods[..i].iter().find(|o| o.wire_name == m.wire_name) {
            errors.push(
                &m.ident,
                format!(
                    "`{}` and `{}` both have the wire name `{}`: a call must be told apart on the \
                     wire; give one another name with #[durable(rename = \"..\")]",
                    first.ident, m.ident, m.wire_name
                ),
            );
        }
    }
    expandable.then_some(Object {
        krate,
        ident,
        vis,
        new,
        methods,
        hooks,
    })
}

/// Removes `#[durable(..)]` from a method's attributes and parses it: its `rename`, if any.
fn take_method_options(attrs: &mut Vec<Attribute>, errors: &mut Errors) -> Option<LitStr> {
    let mut rename = None;
    let mut kept = Vec::with_capacity(attrs.len());
    for attr in attrs.drain(..) {
        if !attr.path().is_ident("durable") {
            kept.push(attr);
            continue;
        }
        let result = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("rename") {
                if rename.is_some() {
                    return Err(meta.error("`rename` is given twice; keep one"));
                }
                rename = Some(non_empty(meta.value()?.parse()?, "a wire name")?);
                Ok(())
            } else if ["name", "renamed_from", "max_queue", "crate"]
                .iter()
                .any(|k| meta.path.is_ident(k))
            {
                Err(meta.error(format!(
                    "`{}` is a class option: put it in #[durable_object(..)] on the struct; \
                     methods take {METHOD_OPTIONS}",
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

/// Checks `new(ctx: Context) -> Self`; `None` when it is malformed (each mistake reported).
fn constructor(f: &ImplItemFn, ident: &Ident, errors: &mut Errors) -> Option<Constructor> {
    let sig = &f.sig;
    let before = errors.len();
    if let Some(token) = sig.asyncness {
        errors.push(
            token,
            format!(
                "`new` cannot be async: it is `{NEW_SIGNATURE}`; do async set-up in \
                 `async fn on_activate(&mut self) -> Result<()>`"
            ),
        );
    }
    if let Some(token) = sig.unsafety {
        errors.push(
            token,
            format!("`new` cannot be unsafe: it is `{NEW_SIGNATURE}`"),
        );
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.push(
            &sig.generics,
            format!("`new` cannot be generic: it is `{NEW_SIGNATURE}`"),
        );
    }
    let mut ctx_span = None;
    match sig.inputs.len() {
        1 => match &sig.inputs[0] {
            FnArg::Typed(arg) if last_segment_is(&arg.ty, "Context") => {
                ctx_span = Some(arg.ty.span())
            }
            FnArg::Typed(arg) => errors.push(
                &arg.ty,
                format!(
                    "`new` takes the object's context, `durable_runtime::Context`: \
                     `{NEW_SIGNATURE}`"
                ),
            ),
            // `new` is only taken as the constructor when it has no receiver.
            FnArg::Receiver(_) => {}
        },
        0 => errors.push(
            sig.paren_token.span.join(),
            format!("`new` takes the object's context: `{NEW_SIGNATURE}`"),
        ),
        n => errors.push(
            &sig.inputs,
            format!(
                "`new` takes exactly one argument, the context: `{NEW_SIGNATURE}` (it has {n}); \
                 settings shared by all objects go in `RuntimeBuilder::env`"
            ),
        ),
    }
    let output_span = match &sig.output {
        ReturnType::Type(_, ty) if is_self_type(ty, ident) => Some(ty.span()),
        ReturnType::Type(_, ty) => {
            errors.push(
                ty,
                format!("`new` returns the object itself: `{NEW_SIGNATURE}`"),
            );
            None
        }
        ReturnType::Default => {
            errors.push(
                &sig.ident,
                format!("`new` must return the object: `{NEW_SIGNATURE}`"),
            );
            None
        }
    };
    if errors.len() > before {
        return None;
    }
    Some(Constructor {
        ctx_span: ctx_span?,
        output_span: output_span?,
    })
}

fn lifecycle_hook(f: &ImplItemFn, kind: HookKind, errors: &mut Errors) -> Option<Hook> {
    let sig = &f.sig;
    let before = errors.len();
    let signature = kind.signature();
    let what = match kind {
        HookKind::Alarm => "the alarm handler",
        HookKind::Activate => "the activation hook",
        HookKind::Evict => "the eviction hook",
        HookKind::WebSocketMessage => "the WebSocket message handler",
        HookKind::WebSocketClose => "the WebSocket close handler",
    };
    let wrong = |problem: &str| format!("`{}` is {what}; {problem}: `{signature}`", kind.name());
    match sig.receiver() {
        Some(r) if is_mut_self(r) => {}
        Some(r) => errors.push(r, wrong("it takes `&mut self`")),
        None => errors.push(&sig.ident, wrong("it takes `&mut self`")),
    }
    if sig.asyncness.is_none() {
        errors.push(sig.fn_token, wrong("it must be async"));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.push(&sig.generics, wrong("it cannot be generic"));
    }
    let typed: Vec<_> = sig
        .inputs
        .iter()
        .filter_map(|a| match a {
            FnArg::Typed(t) => Some(t),
            FnArg::Receiver(_) => None,
        })
        .collect();
    let mut arg_span = None;
    match (kind, typed.as_slice()) {
        (HookKind::Alarm, [arg]) if last_segment_is(&arg.ty, "AlarmInfo") => {
            arg_span = Some(arg.ty.span())
        }
        (HookKind::Alarm, [arg]) => errors.push(
            &arg.ty,
            wrong("its argument is `durable_runtime::AlarmInfo`"),
        ),
        (HookKind::Alarm, []) => errors.push(
            sig.paren_token.span.join(),
            wrong("it takes the run's `AlarmInfo`"),
        ),
        (HookKind::Alarm, [_, extra, ..]) => {
            errors.push(extra, wrong("it takes one argument besides `&mut self`"))
        }
        (HookKind::WebSocketMessage, [_, _]) | (HookKind::WebSocketClose, [_, _, _]) => {}
        (HookKind::WebSocketMessage, [_, _, extra, ..])
        | (HookKind::WebSocketClose, [_, _, _, extra, ..]) => {
            errors.push(extra, wrong("it takes no more arguments"))
        }
        (HookKind::WebSocketMessage, _) => errors.push(
            sig.paren_token.span.join(),
            wrong("it takes the socket and the message"),
        ),
        (HookKind::WebSocketClose, _) => errors.push(
            sig.paren_token.span.join(),
            wrong("it takes the socket, the close code and the reason"),
        ),
        (_, []) => {}
        (_, [first, ..]) => errors.push(first, wrong("it takes no argument besides `&mut self`")),
    }
    match (kind, &sig.output) {
        (HookKind::Evict, ReturnType::Type(_, ty)) if !is_unit(ty) => {
            errors.push(ty, wrong("it returns nothing (the object is going away)"))
        }
        (HookKind::Evict, _) => {}
        (_, ReturnType::Type(_, ty)) if is_result(ty) => {}
        (_, ReturnType::Type(_, ty)) => {
            errors.push(ty, wrong("it returns `durable_runtime::Result<()>`"))
        }
        (_, ReturnType::Default) => errors.push(
            &sig.ident,
            wrong("it returns `durable_runtime::Result<()>`, so that a failure is retried or reported"),
        ),
    }
    if errors.len() > before {
        return None;
    }
    Some(Hook {
        kind,
        ident: sig.ident.clone(),
        arg_span,
        args: typed.iter().map(|t| (*t.ty).clone()).collect(),
    })
}

fn method(
    f: &ImplItemFn,
    rename: Option<LitStr>,
    class: &Ident,
    errors: &mut Errors,
) -> Option<Method> {
    let sig = &f.sig;
    let name = sig.ident.unraw().to_string();
    let before = errors.len();
    let access = match sig.receiver() {
        Some(r) if is_ref_self(r) => {
            if r.mutability.is_some() {
                Access::Exclusive
            } else {
                Access::Shared
            }
        }
        Some(r) if r.reference.is_none() && r.colon_token.is_none() => {
            errors.push(
                r,
                "a durable object method takes `&self` (a shared call) or `&mut self` (an \
                 exclusive call), not `self` by value: the object lives on after the call",
            );
            Access::Shared
        }
        Some(r) => {
            errors.push(
                r,
                "a durable object method takes `&self` (a shared call) or `&mut self` (an \
                 exclusive call)",
            );
            Access::Shared
        }
        None => {
            errors.push(
                &sig.ident,
                format!(
                    "`pub async fn {name}` has no receiver: a call of the stub takes `&self` (a \
                     shared call) or `&mut self` (an exclusive call); make it private if it is a \
                     helper"
                ),
            );
            Access::Shared
        }
    };
    check_qualifiers(sig, &name, errors);
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.push(
            &sig.generics,
            "a durable object method cannot be generic: its arguments and result cross the wire \
             as concrete serde types; name the types",
        );
    }
    if let Some(attr) = f.attrs.iter().find(|a| a.path().is_ident("cfg")) {
        errors.push(
            attr,
            "a call cannot be conditional: the stub and the wire schema must not depend on cfg; \
             put the #[cfg] inside the method's body",
        );
    }
    let mut rustc_reports = false;
    let mut args = Vec::new();
    for (i, input) in sig.inputs.iter().enumerate() {
        let FnArg::Typed(pat) = input else { continue };
        rustc_reports |= check_wire_type(&pat.ty, "an argument", errors);
        let ident = match &*pat.pat {
            Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => p.ident.clone(),
            _ => Ident::new(&format!("__arg{i}"), pat.pat.span()),
        };
        // Two arguments of one name are rustc's error (E0415); the method is left out.
        rustc_reports |= args.iter().any(|a: &Arg| a.ident == ident);
        args.push(Arg {
            ident,
            ty: replace_self((*pat.ty).clone(), class),
        });
    }
    let (output, has_output, returns_result) = match &sig.output {
        ReturnType::Default => (syn::parse_quote!(()), false, false),
        ReturnType::Type(_, ty) => {
            rustc_reports |= check_wire_type(ty, "a return", errors);
            (replace_self((**ty).clone(), class), true, is_result(ty))
        }
    };
    let fetch = name == "fetch";
    if fetch {
        check_fetch(sig, &args, errors);
    }
    // A `_` is rustc's error (E0121, on the user's line); the method is left out so it causes
    // no second one. So is an argument name given twice.
    if errors.len() > before || rustc_reports {
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
        wire_name: rename.map(|lit| lit.value()).unwrap_or(name),
        access,
        args,
        output,
        has_output,
        returns_result,
        docs,
        fetch,
    })
}

/// The HTTP handler's shape: one argument, a result. The types themselves (`Request`,
/// `Result<Response>`, under any alias) are checked by the compiler, at the user's tokens
/// (expand.rs).
fn check_fetch(sig: &Signature, args: &[Arg], errors: &mut Errors) {
    let wrong = |problem: &str| {
        format!("`fetch` answers HTTP requests; {problem}: `{FETCH_SIGNATURE}` (or `&self`)")
    };
    match args {
        [_] => {}
        [] => errors.push(sig.paren_token.span.join(), wrong("it takes the `Request`")),
        [_, extra, ..] => errors.push(&extra.ty, wrong("it takes one argument besides `self`")),
    }
    if let ReturnType::Default = sig.output {
        errors.push(
            &sig.ident,
            wrong("it returns `durable_runtime::Result<Response>`"),
        );
    }
}

const FETCH_SIGNATURE: &str = "pub async fn fetch(&mut self, request: Request) -> Result<Response>";

fn check_qualifiers(sig: &Signature, name: &str, errors: &mut Errors) {
    if sig.asyncness.is_none() {
        errors.push(
            sig.fn_token,
            format!(
                "`pub fn {name}` must be `pub async fn`: public methods are calls of the stub; \
                 make helpers private"
            ),
        );
    }
    if let Some(token) = sig.unsafety {
        errors.push(
            token,
            "a call of the stub cannot be unsafe: a caller elsewhere cannot uphold its contract",
        );
    }
    if let Some(abi) = &sig.abi {
        errors.push(
            abi,
            "a call of the stub cannot have an ABI: remove `extern`",
        );
    }
    if let Some(token) = sig.constness {
        errors.push(token, "a call of the stub cannot be `const`");
    }
}

/// Types that cannot cross the wire: `impl Trait`, borrowed references. Returns `true` when
/// the type has a `_`, which rustc reports itself.
fn check_wire_type(ty: &Type, what: &str, errors: &mut Errors) -> bool {
    match ty {
        Type::ImplTrait(t) => {
            errors.push(
                t,
                format!(
                    "{what} type cannot be `impl Trait`: calls cross the wire, so name a \
                     concrete serde type"
                ),
            );
            false
        }
        Type::Infer(_) => true,
        Type::Reference(r) if !is_static(r) => {
            errors.push(
                r,
                format!(
                    "{what} type cannot borrow: calls cross the wire and run later; use an \
                     owned type (`String` for `&str`, `Vec<T>` for `&[T]`)"
                ),
            );
            false
        }
        Type::Reference(r) => {
            // Serializable, but never `DeserializeOwned`: the receiving side decodes an owned
            // value. Reported here, once, rather than as trait errors in generated code.
            errors.push(
                r,
                format!(
                    "{what} type cannot be a reference, even `'static`: the other side of the \
                     wire decodes an owned value; use an owned type (`String` for `&str`, \
                     `Vec<T>` for `&[T]`)"
                ),
            );
            false
        }
        Type::Path(p) => {
            let mut placeholder = false;
            if let Some(q) = &p.qself {
                placeholder |= check_wire_type(&q.ty, what, errors);
            }
            for seg in &p.path.segments {
                if let PathArguments::AngleBracketed(a) = &seg.arguments {
                    for arg in &a.args {
                        match arg {
                            GenericArgument::Type(t) => {
                                placeholder |= check_wire_type(t, what, errors)
                            }
                            GenericArgument::Lifetime(l) if l.ident != "static" => errors.push(
                                l,
                                format!(
                                    "{what} type cannot borrow (lifetime `{l}`): calls cross \
                                     the wire and run later; use an owned type"
                                ),
                            ),
                            _ => {}
                        }
                    }
                }
            }
            placeholder
        }
        Type::Tuple(t) => t
            .elems
            .iter()
            .fold(false, |p, t| check_wire_type(t, what, errors) | p),
        Type::Array(a) => check_wire_type(&a.elem, what, errors),
        Type::Slice(s) => check_wire_type(&s.elem, what, errors),
        Type::Paren(p) => check_wire_type(&p.elem, what, errors),
        Type::Group(g) => check_wire_type(&g.elem, what, errors),
        _ => false,
    }
}

fn is_static(r: &syn::TypeReference) -> bool {
    r.lifetime.as_ref().is_some_and(|l| l.ident == "static")
}

fn last_segment(ty: &Type) -> Option<&syn::PathSegment> {
    match ty {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last(),
        Type::Paren(p) => last_segment(&p.elem),
        Type::Group(g) => last_segment(&g.elem),
        _ => None,
    }
}

fn last_segment_is(ty: &Type, name: &str) -> bool {
    last_segment(ty).is_some_and(|s| s.ident == name)
}

pub fn is_result(ty: &Type) -> bool {
    last_segment_is(ty, "Result")
}

fn is_unit(ty: &Type) -> bool {
    matches!(ty, Type::Tuple(t) if t.elems.is_empty())
}

fn is_self_type(ty: &Type, ident: &Ident) -> bool {
    matches!(ty, Type::Path(p) if p.qself.is_none()
        && (p.path.is_ident("Self") || p.path.is_ident(ident)))
}

/// `&self`, `&mut self`, `self: &Self`, `self: &mut Self`.
fn is_ref_self(r: &Receiver) -> bool {
    match &*r.ty {
        Type::Reference(t) => matches!(&*t.elem, Type::Path(p) if p.path.is_ident("Self")),
        _ => false,
    }
}

fn is_mut_self(r: &Receiver) -> bool {
    is_ref_self(r) && matches!(&*r.ty, Type::Reference(t) if t.mutability.is_some())
}

/// Replaces `Self` by the class's name: the generated enums and stub are outside the impl.
fn replace_self(mut ty: Type, class: &Ident) -> Type {
    struct ReplaceSelf<'a>(&'a Ident);
    impl VisitMut for ReplaceSelf<'_> {
        fn visit_path_mut(&mut self, path: &mut Path) {
            if path.leading_colon.is_none() {
                if let Some(first) = path.segments.first_mut() {
                    if first.ident == "Self" {
                        let mut class = self.0.clone();
                        class.set_span(first.ident.span());
                        first.ident = class;
                    }
                }
            }
            syn::visit_mut::visit_path_mut(self, path);
        }
    }
    ReplaceSelf(class).visit_type_mut(&mut ty);
    ty
}
