//! From the model to code; nothing is checked here. Every path is absolute (`#krate::..`, the
//! runtime's path as found in the user's Cargo.toml, and `::core::..`), so the code works under
//! `#![no_implicit_prelude]` and with a renamed dependency; internal names start with `__`.
//!
//! Checks that need the type system are generated at the user's tokens with
//! `quote_spanned!`, so their errors land on the user's line:
//! - the class is `Send + Sync`: on the struct's name (struct attribute), or on `impl Counter`
//!   when the struct has no attribute;
//! - every argument and result type is `Serialize + DeserializeOwned`: on the type;
//! - every call's and hook's future is `Send`: on the method's name.
//!
//! The `DurableObject` impl assumes `for<'__durable> Counter: Send + Sync`. The supertrait
//! bound is then proven by the checks above rather than by the impl header, which would report
//! a second error for the same mistake in generated code.

use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{GenericArgument, Ident, PathArguments, Type};

use crate::model::{Access, Class, Hook, HookKind, Method, Object};

/// The struct side: the declared options and the `Send + Sync` check on the user's struct.
pub fn class(class: &Class) -> TokenStream {
    let Class { krate, ident, .. } = class;
    let name = match &class.name {
        Some(lit) => lit.to_token_stream(),
        None => ident.unraw().to_string().into_token_stream(),
    };
    let renamed_from = class
        .renamed_from
        .iter()
        .map(|lit| quote!(options.renamed_from = ::core::option::Option::Some(#lit);));
    let max_queue = class
        .max_queue
        .iter()
        .map(|lit| quote!(options.max_queue = #lit;));
    let check = quote_spanned! {ident.span()=>
        fn a_durable_object_must_be_send_and_sync<
            T: ::core::marker::Send + ::core::marker::Sync,
        >() {
        }
        a_durable_object_must_be_send_and_sync::<#ident>();
    };
    quote! {
        #[allow(dead_code)]
        impl #ident {
            #[doc(hidden)]
            pub const __DURABLE_CLASS: ::core::option::Option<#krate::ClassOptions> = {
                #[allow(unused_mut)]
                let mut options = #krate::ClassOptions::named(#name);
                #(#renamed_from)*
                #(#max_queue)*
                ::core::option::Option::Some(options)
            };

            /// Checked on the struct instead (below).
            #[doc(hidden)]
            pub fn __durable_object_must_be_send_and_sync() {}
        }

        const _: fn() = || {
            #check
        };
    }
}

/// The impl side: call enums, the typed stub, the checks, and the `DurableObject` impl.
pub fn object(object: &Object) -> TokenStream {
    let Object {
        krate, ident, vis, ..
    } = object;
    let class_name = ident.unraw().to_string();
    let stub = format_ident!("{}Stub", ident.unraw());
    let shared_enum = format_ident!("__{}SharedCall", ident.unraw());
    let exclusive_enum = format_ident!("__{}ExclusiveCall", ident.unraw());
    let output_enum = format_ident!("__{}Output", ident.unraw());
    let enums = Enums {
        shared: &shared_enum,
        exclusive: &exclusive_enum,
        output: &output_enum,
    };

    let of = |access: Access| object.methods.iter().filter(move |m| m.access == access);
    let variants = |access: Access| {
        of(access).map(|m| {
            let name = &m.ident;
            let fields = m.args.iter().map(|a| {
                let (i, t) = (&a.ident, &a.ty);
                quote!(#i: #t)
            });
            quote!(#name { #(#fields,)* })
        })
    };
    let shared_variants = variants(Access::Shared);
    let exclusive_variants = variants(Access::Exclusive);
    let output_variants = object.methods.iter().map(|m| {
        let (name, ty) = (&m.ident, &m.output);
        quote!(#name(#ty))
    });

    let names = |access: Access, enum_ident: &Ident| {
        let arms = of(access).map(|m| {
            let (name, wire) = (&m.ident, &m.wire_name);
            quote!(#enum_ident::#name { .. } => #wire,)
        });
        quote!(match *call { #(#arms)* })
    };
    let shared_names = names(Access::Shared, &shared_enum);
    let exclusive_names = names(Access::Exclusive, &exclusive_enum);

    let dispatch = |access: Access, enum_ident: &Ident| {
        let arms = of(access).map(|m| {
            let name = &m.ident;
            let args: Vec<_> = m.args.iter().map(|a| &a.ident).collect();
            let call = send_future(
                name,
                &m.output.to_token_stream(),
                quote!(#ident::#name(self #(, #args)*)),
            );
            quote! {
                #enum_ident::#name { #(#args,)* } => #output_enum::#name(#call),
            }
        });
        quote!(match call { #(#arms)* })
    };
    let dispatch_shared = dispatch(Access::Shared, &shared_enum);
    let dispatch_exclusive = dispatch(Access::Exclusive, &exclusive_enum);

    let stub_methods = object
        .methods
        .iter()
        .map(|m| stub_method(krate, ident, m, &enums));
    let wire_checks = object
        .methods
        .iter()
        .flat_map(|m| wire_checks(krate, m))
        .chain(object.hooks.iter().flat_map(|h| hook_checks(krate, h)));
    let object_check = quote_spanned! {ident.span()=>
        #ident::__durable_object_must_be_send_and_sync();
    };
    let activate = match &object.new {
        Some(new) => {
            let ctx = Ident::new("ctx", new.ctx_span);
            quote_spanned!(new.output_span=> #ident::new(#ctx))
        }
        // Reported already: the build fails, and this keeps the rest type-checking.
        None => quote! {
            let _ = ctx;
            ::core::unreachable!()
        },
    };
    let hooks = object.hooks.iter().map(|hook| {
        let name = &hook.ident;
        match hook.kind {
            HookKind::Alarm => {
                let info = Ident::new("info", hook.arg_span.unwrap_or_else(|| name.span()));
                let call = send_future(
                    name,
                    &quote!(#krate::Result<()>),
                    quote!(#ident::#name(self, #info)),
                );
                quote! {
                    fn dispatch_alarm(
                        &mut self,
                        info: #krate::AlarmInfo,
                    ) -> impl ::core::future::Future<
                        Output = ::core::option::Option<#krate::Result<()>>,
                    > + ::core::marker::Send + '_ {
                        async move { ::core::option::Option::Some(#call) }
                    }
                }
            }
            HookKind::Activate => {
                let call = send_future(
                    name,
                    &quote!(#krate::Result<()>),
                    quote!(#ident::#name(self)),
                );
                quote! {
                    fn dispatch_activate(
                        &mut self,
                    ) -> impl ::core::future::Future<Output = #krate::Result<()>>
                           + ::core::marker::Send + '_ {
                        async move { #call }
                    }
                }
            }
            HookKind::WebSocketMessage | HookKind::WebSocketClose => {
                let expected = websocket_arg_types(krate, hook.kind);
                let (params, binds): (Vec<_>, Vec<_>) = expected
                    .iter()
                    .zip(&hook.args)
                    .enumerate()
                    .map(|(i, (expected, declared))| {
                        let arg = format_ident!("__arg{}", i);
                        let param = quote!(#arg: #expected);
                        // A wrong type is reported at the user's tokens (`hook_checks`);
                        // this conversion then adds no error of its own.
                        let bind = quote! {
                            let #arg = match (&&#krate::__private::Cast::<#expected, #declared>::new()).cast(#arg) {
                                ::core::option::Option::Some(value) => value,
                                ::core::option::Option::None => ::core::unreachable!(),
                            };
                        };
                        (param, bind)
                    })
                    .unzip();
                let args = (0..expected.len()).map(|i| format_ident!("__arg{}", i));
                let call = send_future(
                    name,
                    &quote!(#krate::Result<()>),
                    quote!(#ident::#name(self #(, #args)*)),
                );
                let dispatch = match hook.kind {
                    HookKind::WebSocketMessage => format_ident!("dispatch_websocket_message"),
                    _ => format_ident!("dispatch_websocket_close"),
                };
                quote! {
                    fn #dispatch(
                        &mut self,
                        #(#params),*
                    ) -> impl ::core::future::Future<
                        Output = ::core::option::Option<#krate::Result<()>>,
                    > + ::core::marker::Send + '_ {
                        #[allow(unused_imports)]
                        use #krate::__private::{CastOther as _, CastSame as _};
                        #(#binds)*
                        async move { ::core::option::Option::Some(#call) }
                    }
                }
            }
            HookKind::Evict => {
                let call = send_future(name, &quote!(()), quote!(#ident::#name(self)));
                quote! {
                    fn dispatch_evict(
                        &mut self,
                    ) -> impl ::core::future::Future<Output = ()> + ::core::marker::Send + '_ {
                        async move { #call }
                    }
                }
            }
        }
    });
    let schema = object.methods.iter().map(|m| {
        let (name, wire) = (m.ident.unraw().to_string(), &m.wire_name);
        let access = match m.access {
            Access::Shared => quote!(#krate::Access::Shared),
            Access::Exclusive => quote!(#krate::Access::Exclusive),
        };
        let args = m.args.iter().map(|a| {
            let (name, ty) = (a.ident.unraw().to_string(), type_string(&a.ty));
            quote!((#name, #ty))
        });
        let output = type_string(&m.output);
        let id = method_id_const(m);
        quote! {
            #krate::MethodSchema {
                name: #name,
                wire_name: #wire,
                id: #output_enum::#id,
                access: #access,
                args: &[#(#args),*],
                output: #output,
            }
        }
    });
    let codec = Codec {
        krate,
        enums: &enums,
    };
    let method_ids = object.methods.iter().map(|m| {
        let (id, wire) = (method_id_const(m), &m.wire_name);
        quote! {
            const #id: u64 = #krate::MethodSchema::method_id(Self::__CLASS.wire_name(), #wire);
        }
    });
    let encode_shared = codec.encode_calls(of(Access::Shared), &shared_enum);
    let encode_exclusive = codec.encode_calls(of(Access::Exclusive), &exclusive_enum);
    // A wire name given twice is reported (parse.rs); its second method gets no arm, which
    // would be unreachable.
    let decodable: Vec<&Method> = object
        .methods
        .iter()
        .enumerate()
        .filter(|&(i, m)| {
            !object.methods[..i]
                .iter()
                .any(|o| o.wire_name == m.wire_name)
        })
        .map(|(_, m)| m)
        .collect();
    let decode_calls = decodable.iter().map(|m| codec.decode_call(m));
    let encode_outputs = object.methods.iter().map(|m| codec.encode_output(m));
    let decode_outputs = decodable.iter().map(|m| codec.decode_output(m));
    let codec_imports = codec.imports();
    let fetch_impl = object.methods.iter().find(|m| m.fetch).map(|m| {
        let name = &m.ident;
        let (arg, ty, out) = (&m.args[0].ident, &m.args[0].ty, &m.output);
        let call = match m.access {
            Access::Shared => {
                quote!(#krate::__private::Call::Shared(#shared_enum::#name { #arg: request }))
            }
            Access::Exclusive => {
                quote!(#krate::__private::Call::Exclusive(#exclusive_enum::#name { #arg: request }))
            }
        };
        // With other types than `Request` and `Result<Response>`, the build fails at the
        // user's signature (`wire_checks`); this code must then add no error of its own.
        let call = quote! {
            match (&&#krate::__private::Cast::<#krate::http::Request, #ty>::new()).cast(request) {
                ::core::option::Option::Some(request) => #call,
                ::core::option::Option::None => ::core::unreachable!(),
            }
        };
        quote! {
            #[allow(deprecated)]
            impl #krate::http::Fetch for #ident
            where
                for<'__durable> #ident: ::core::marker::Send + ::core::marker::Sync,
            {
                fn fetch_call(
                    request: #krate::http::Request,
                ) -> #krate::__private::Call<#shared_enum, #exclusive_enum> {
                    #[allow(unused_imports)]
                    use #krate::__private::{CastOther as _, CastSame as _};
                    #call
                }

                #[allow(unreachable_patterns)]
                fn fetch_output(output: #output_enum) -> #krate::Result<#krate::http::Response> {
                    #[allow(unused_imports)]
                    use #krate::__private::{CastOther as _, CastSame as _};
                    match output {
                        #output_enum::#name(response) => {
                            (&&#krate::__private::Cast::<#out, #krate::Result<#krate::http::Response>>::new())
                                .cast(response)
                                .unwrap_or_else(|| ::core::result::Result::Err(
                                    #krate::__private::cast_failed(),
                                ))
                        }
                        _ => ::core::result::Result::Err(#krate::Error::internal(
                            "a reply of another method",
                        )),
                    }
                }
            }
        }
    });

    let stub_doc = format!(
        "The typed stub of [`{class_name}`]: each method sends a call to one `{class_name}` \
         object and waits for its reply. Cheap to clone; get one from \
         `Namespace<{class_name}>::get`."
    );
    // The stub needs `Counter: DurableObject`, which holds only if `Counter` is `Send + Sync`:
    // as for the `DurableObject` impl, the stub's items assume it, so that a class that is not
    // gets one error (on the user's struct), not one per item that names the stub.
    let stub_bound = quote! {
        where
            for<'__durable> #ident: #krate::DurableObject,
    };
    let enum_attrs = quote! {
        #[doc(hidden)]
        #[allow(non_camel_case_types, private_interfaces, dead_code)]
    };

    quote! {
        #enum_attrs
        #vis enum #shared_enum { #(#shared_variants,)* }

        #enum_attrs
        #vis enum #exclusive_enum { #(#exclusive_variants,)* }

        #enum_attrs
        #vis enum #output_enum { #(#output_variants,)* }

        /// The class's options and its method IDs, for the `DurableObject` impl. Calls are
        /// told apart on the wire by these IDs, never by their position in the enums.
        #[allow(non_upper_case_globals)]
        impl #output_enum {
            const __CLASS: #krate::ClassOptions = {
                #[allow(unused_imports)]
                use #krate::__private::UndeclaredClass as _;
                #krate::__private::class_options(#ident::__DURABLE_CLASS, #class_name)
            };
            #(#method_ids)*
        }

        #[doc = #stub_doc]
        #vis struct #stub
        #stub_bound
        {
            __stub: #krate::Stub<#ident>,
        }

        impl ::core::clone::Clone for #stub #stub_bound {
            fn clone(&self) -> Self {
                #stub { __stub: ::core::clone::Clone::clone(&self.__stub) }
            }
        }

        impl ::core::fmt::Debug for #stub #stub_bound {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                ::core::fmt::Debug::fmt(&self.__stub, f)
            }
        }

        impl ::core::convert::From<#krate::Stub<#ident>> for #stub #stub_bound {
            fn from(stub: #krate::Stub<#ident>) -> Self {
                #stub { __stub: stub }
            }
        }

        impl #krate::ObjectStub for #stub #stub_bound {
            type Object = #ident;
            fn stub(&self) -> &#krate::Stub<#ident> {
                &self.__stub
            }
        }

        #[allow(clippy::needless_lifetimes, deprecated)]
        impl #stub #stub_bound {
            #(#stub_methods)*
        }

        const _: fn() = || {
            #[allow(unused_imports)]
            use #krate::__private::{UndeclaredClass as _, WireFallback as _, WireSerialize as _};
            #object_check
            #(#wire_checks)*
        };

        #fetch_impl

        #[allow(deprecated, clippy::type_complexity)]
        impl #krate::DurableObject for #ident
        where
            for<'__durable> #ident: ::core::marker::Send + ::core::marker::Sync,
        {
            type SharedCall = #shared_enum;
            type ExclusiveCall = #exclusive_enum;
            type Output = #output_enum;
            type Stub = #stub;

            fn class_options() -> #krate::ClassOptions {
                #output_enum::__CLASS
            }

            fn activate(ctx: #krate::Context) -> Self {
                #activate
            }

            fn method_name(
                call: &#krate::__private::Call<#shared_enum, #exclusive_enum>,
            ) -> &'static str {
                match call {
                    #krate::__private::Call::Shared(call) => #shared_names,
                    #krate::__private::Call::Exclusive(call) => #exclusive_names,
                }
            }

            fn dispatch_shared(
                &self,
                call: #shared_enum,
            ) -> impl ::core::future::Future<Output = #output_enum> + ::core::marker::Send + '_ {
                async move { #dispatch_shared }
            }

            fn dispatch_exclusive(
                &mut self,
                call: #exclusive_enum,
            ) -> impl ::core::future::Future<Output = #output_enum> + ::core::marker::Send + '_ {
                async move { #dispatch_exclusive }
            }

            #(#hooks)*

            fn schema() -> &'static [#krate::MethodSchema] {
                const SCHEMA: &[#krate::MethodSchema] = &[#(#schema),*];
                SCHEMA
            }

            fn encode_call(
                __call: &#krate::__private::Call<#shared_enum, #exclusive_enum>,
                __out: &mut ::std::vec::Vec<u8>,
            ) -> #krate::Result<u64> {
                #codec_imports
                match *__call {
                    #krate::__private::Call::Shared(ref __call) => #encode_shared,
                    #krate::__private::Call::Exclusive(ref __call) => #encode_exclusive,
                }
            }

            fn decode_call(
                __method: u64,
                __bytes: &[u8],
            ) -> #krate::Result<#krate::__private::Call<#shared_enum, #exclusive_enum>> {
                #codec_imports
                match __method {
                    #(#decode_calls)*
                    __method => ::core::result::Result::Err(
                        #krate::__private::unknown_method(#output_enum::__CLASS.name, __method),
                    ),
                }
            }

            fn encode_output(
                __output: &#output_enum,
                __out: &mut ::std::vec::Vec<u8>,
            ) -> #krate::Result<()> {
                #codec_imports
                match *__output { #(#encode_outputs)* }
            }

            fn decode_output(__method: u64, __bytes: &[u8]) -> #krate::Result<#output_enum> {
                #codec_imports
                match __method {
                    #(#decode_outputs)*
                    __method => ::core::result::Result::Err(
                        #krate::__private::unknown_method(#output_enum::__CLASS.name, __method),
                    ),
                }
            }
        }
    }
}

struct Enums<'a> {
    shared: &'a Ident,
    exclusive: &'a Ident,
    output: &'a Ident,
}

/// The name of the const holding a method's ID, in the inherent impl of the output enum.
fn method_id_const(m: &Method) -> Ident {
    format_ident!("__ID_{}", m.ident.unraw())
}

/// The wire encoding of calls and outputs: postcard, arguments as a tuple in declaration
/// order, outputs as the declared return type; methods keyed by their method ID.
struct Codec<'a> {
    krate: &'a syn::Path,
    enums: &'a Enums<'a>,
}

impl Codec<'_> {
    /// `encode_call`'s match on one call enum: encodes the arguments, returns the method ID.
    fn encode_calls<'m>(
        &self,
        methods: impl Iterator<Item = &'m Method>,
        enum_ident: &Ident,
    ) -> TokenStream {
        let output = self.enums.output;
        let arms = methods.map(|m| {
            let (name, id) = (&m.ident, method_id_const(m));
            let fields = m.args.iter().map(|a| &a.ident);
            let bindings: Vec<Ident> = (0..m.args.len())
                .map(|i| format_ident!("__arg{}", i))
                .collect();
            let types = m.args.iter().map(|a| {
                let ty = &a.ty;
                quote!(&#ty)
            });
            let encode = if m.fetch {
                let krate = self.krate;
                let ty = &m.args[0].ty;
                quote! {
                    match (&&#krate::__private::Cast::<#ty, #krate::http::Request>::new())
                        .cast_ref(#(#bindings)*)
                    {
                        ::core::option::Option::Some(request) => {
                            #krate::http::wire::encode_request(request, __out)
                        }
                        ::core::option::Option::None => ::core::result::Result::Err(
                            #krate::__private::cast_failed(),
                        ),
                    }
                }
            } else {
                self.encode(quote!((#(#types,)*)), &quote!(&(#(#bindings,)*)))
            };
            quote! {
                #enum_ident::#name { #(#fields: ref #bindings,)* } => {
                    #encode?;
                    ::core::result::Result::Ok(#output::#id)
                }
            }
        });
        quote!(match *__call { #(#arms)* })
    }

    /// `decode_call`'s arm for one method: decodes the argument tuple into its call.
    fn decode_call(&self, m: &Method) -> TokenStream {
        let krate = self.krate;
        let Enums {
            shared,
            exclusive,
            output,
        } = self.enums;
        let (name, id) = (&m.ident, method_id_const(m));
        let tuple = {
            let types = m.args.iter().map(|a| &a.ty);
            quote!((#(#types,)*))
        };
        let decode = if m.fetch {
            let ty = &m.args[0].ty;
            quote! {
                #krate::http::wire::decode_request(#output::__CLASS.name, __bytes).and_then(|r| {
                    (&&#krate::__private::Cast::<#krate::http::Request, #ty>::new())
                        .cast(r)
                        .map(|r| (r,))
                        .ok_or_else(#krate::__private::cast_failed)
                })
            }
        } else {
            self.decode(m, tuple.clone(), "arguments")
        };
        let (binding, fields) = if m.args.is_empty() {
            (quote!(()), Vec::new())
        } else {
            let fields = m
                .args
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    let (field, index) = (&a.ident, syn::Index::from(i));
                    quote!(#field: __args.#index)
                })
                .collect();
            (quote!(__args: #tuple), fields)
        };
        let call = match m.access {
            Access::Shared => {
                quote!(#krate::__private::Call::Shared(#shared::#name { #(#fields,)* }))
            }
            Access::Exclusive => {
                quote!(#krate::__private::Call::Exclusive(#exclusive::#name { #(#fields,)* }))
            }
        };
        quote! {
            #output::#id => {
                let #binding = #decode?;
                ::core::result::Result::Ok(#call)
            }
        }
    }

    /// `encode_output`'s arm for one method: the return value, as declared.
    fn encode_output(&self, m: &Method) -> TokenStream {
        let output = self.enums.output;
        let name = &m.ident;
        let encode = if m.fetch {
            let krate = self.krate;
            let ty = &m.output;
            quote! {
                match (&&#krate::__private::Cast::<#ty, #krate::Result<#krate::http::Response>>::new())
                    .cast_ref(__value)
                {
                    ::core::option::Option::Some(value) => {
                        #krate::http::wire::encode_response(value, __out)
                    }
                    ::core::option::Option::None => ::core::result::Result::Err(
                        #krate::__private::cast_failed(),
                    ),
                }
            }
        } else {
            self.encode(m.output.to_token_stream(), &quote!(__value))
        };
        quote!(#output::#name(ref __value) => #encode,)
    }

    /// `decode_output`'s arm for one method.
    fn decode_output(&self, m: &Method) -> TokenStream {
        let output = self.enums.output;
        let (name, id) = (&m.ident, method_id_const(m));
        let decode = if m.fetch {
            let krate = self.krate;
            let ty = &m.output;
            quote! {
                #krate::http::wire::decode_response(#output::__CLASS.name, __bytes).and_then(|r| {
                    (&&#krate::__private::Cast::<#krate::Result<#krate::http::Response>, #ty>::new())
                        .cast(r)
                        .ok_or_else(#krate::__private::cast_failed)
                })
            }
        } else {
            self.decode(m, m.output.to_token_stream(), "return value")
        };
        quote!(#output::#id => ::core::result::Result::map(#decode, #output::#name),)
    }

    /// Appends `value` (a `&ty`) to `__out`. Through the wire probe: `__private::encode` when
    /// `ty: Serialize`; otherwise `assert_wire` reports the type (once, on the user's tokens)
    /// and this compiles to a fallback that never runs.
    fn encode(&self, ty: TokenStream, value: &TokenStream) -> TokenStream {
        let krate = self.krate;
        quote!((&&#krate::__private::WireProbe::<#ty>::new()).encode_wire(#value, __out))
    }

    /// Decodes a `ty` (`what`: the arguments or the return value of `m`) from `__bytes`:
    /// `__private::decode`, through the wire probe as for [`Codec::encode`].
    fn decode(&self, m: &Method, ty: TokenStream, what: &str) -> TokenStream {
        let (krate, output, wire) = (self.krate, self.enums.output, &m.wire_name);
        quote! {
            (&&#krate::__private::WireProbe::<#ty>::new())
                .decode_wire(#output::__CLASS.name, #wire, #what, __bytes)
        }
    }

    /// The probe's codec traits, in scope in a function of the codec.
    fn imports(&self) -> TokenStream {
        let krate = self.krate;
        quote! {
            #[allow(unused_imports)]
            use #krate::__private::{
                CastOther as _, CastSame as _, WireCodecFallback as _, WireDecode as _,
                WireEncode as _,
            };
        }
    }
}

/// Awaits `call` (a call of the user's method `name`) through a `dyn Future + Send`, spanned
/// at the method's name: a future that is not `Send` is reported there, on the user's line.
fn send_future(name: &Ident, output: &TokenStream, call: TokenStream) -> TokenStream {
    quote_spanned! {name.span()=>
        {
            let __future: ::core::pin::Pin<
                &mut (dyn ::core::future::Future<Output = #output> + ::core::marker::Send),
            > = ::core::pin::pin!(#call);
            __future.await
        }
    }
}

/// `Serialize + DeserializeOwned` checks at each argument and result type. For `Result<T>`
/// and `Result<T, E>`, `T` and `E` are checked each at its own tokens.
fn wire_checks(krate: &syn::Path, m: &Method) -> Vec<TokenStream> {
    if m.fetch {
        // HTTP messages cross through the runtime's codec: the types must be exactly its own.
        let request = m.args.iter().map(|a| {
            let ty = &a.ty;
            quote_spanned! {ty.span()=>
                #krate::__private::fetch_request::<#ty>();
            }
        });
        let out = &m.output;
        let response = quote_spanned! {out.span()=>
            #krate::__private::fetch_result::<#out>();
        };
        return request.chain([response]).collect();
    }
    let mut types: Vec<&Type> = m.args.iter().map(|a| &a.ty).collect();
    if m.has_output {
        match result_args(&m.output) {
            Some(args) if m.returns_result => types.extend(args),
            _ => types.push(&m.output),
        }
    }
    types
        .into_iter()
        .map(|ty| {
            quote_spanned! {ty.span()=>
                (&&#krate::__private::WireProbe::<#ty>::new()).assert_wire();
            }
        })
        .collect()
}

/// The argument types the runtime gives a WebSocket handler.
fn websocket_arg_types(krate: &syn::Path, kind: HookKind) -> Vec<TokenStream> {
    let ws = quote!(#krate::websocket::WebSocket);
    match kind {
        HookKind::WebSocketMessage => vec![ws, quote!(#krate::websocket::Message)],
        HookKind::WebSocketClose => vec![ws, quote!(u16), quote!(::std::string::String)],
        _ => Vec::new(),
    }
}

/// A WebSocket handler's argument types, each checked at the user's tokens.
fn hook_checks(krate: &syn::Path, hook: &Hook) -> Vec<TokenStream> {
    let signature = hook.kind.signature();
    websocket_arg_types(krate, hook.kind)
        .into_iter()
        .zip(&hook.args)
        .map(|(expected, declared)| {
            quote_spanned! {declared.span()=>
                #krate::__private::handler_arg::<#declared, #expected>(#signature);
            }
        })
        .collect()
}

/// The type arguments of `Result<T>` or `Result<T, E>`.
fn result_args(ty: &Type) -> Option<Vec<&Type>> {
    let Type::Path(p) = ty else { return None };
    let PathArguments::AngleBracketed(args) = &p.path.segments.last()?.arguments else {
        return None;
    };
    let types: Vec<&Type> = args
        .args
        .iter()
        .filter_map(|a| match a {
            GenericArgument::Type(t) => Some(t),
            _ => None,
        })
        .collect();
    (types.len() == args.args.len() && (1..=2).contains(&types.len())).then_some(types)
}

fn stub_method(krate: &syn::Path, class: &Ident, m: &Method, enums: &Enums) -> TokenStream {
    let name = &m.ident;
    let docs = &m.docs;
    let default_doc = (!docs.iter().any(|a| a.path().is_ident("doc"))).then(|| {
        let doc = format!("Calls `{}::{}` on the object.", class.unraw(), name.unraw());
        quote!(#[doc = #doc])
    });
    let params = m.args.iter().map(|a| {
        let (i, t) = (&a.ident, &a.ty);
        quote!(#i: #t)
    });
    let args = m.args.iter().map(|a| &a.ident);
    let Enums {
        shared,
        exclusive,
        output,
    } = enums;
    let call = match m.access {
        Access::Shared => quote!(#krate::__private::Call::Shared(#shared::#name { #(#args,)* })),
        Access::Exclusive => {
            quote!(#krate::__private::Call::Exclusive(#exclusive::#name { #(#args,)* }))
        }
    };
    let out = &m.output;
    let (ret, ok) = if m.returns_result {
        (quote!(#out), quote!(value))
    } else {
        (
            quote!(#krate::Result<#out>),
            quote!(::core::result::Result::Ok(value)),
        )
    };
    // At the result type: an error type without `From<durable_runtime::Error>` is reported
    // on the user's signature.
    let from_error = quote_spanned! {out.span()=>
        <#ret as #krate::__private::FromRuntimeError>::from_runtime_error(
            #krate::__private::reply_error(reply),
        )
    };
    quote! {
        #(#docs)*
        #default_doc
        pub async fn #name(&self, #(#params),*) -> #ret {
            match self.__stub.call(#call).await {
                ::core::result::Result::Ok(#output::#name(value)) => #ok,
                reply => #from_error,
            }
        }
    }
}

/// A type as a compact string for the schema: `Result<Vec<(u8, String)>>`, `&'static str`.
pub fn type_string(ty: &Type) -> String {
    let mut out = String::new();
    write_tokens(ty.to_token_stream(), &mut out);
    out
}

fn write_tokens(tokens: TokenStream, out: &mut String) {
    // Whether the last token ends a word, so that a following word needs a space.
    let mut word = false;
    let mut iter = tokens.into_iter().peekable();
    while let Some(tt) = iter.next() {
        match tt {
            TokenTree::Ident(_) | TokenTree::Literal(_) => {
                if word {
                    out.push(' ');
                }
                out.push_str(&tt.to_string());
                word = true;
            }
            TokenTree::Punct(p) => {
                word = false;
                match p.as_char() {
                    ',' | ';' => {
                        out.push(p.as_char());
                        out.push(' ');
                    }
                    '+' | '=' => {
                        out.push(' ');
                        out.push(p.as_char());
                        out.push(' ');
                    }
                    '-' if p.spacing() == Spacing::Joint
                        && matches!(iter.peek(), Some(TokenTree::Punct(n)) if n.as_char() == '>') =>
                    {
                        iter.next();
                        out.push_str(" -> ");
                    }
                    c => out.push(c),
                }
            }
            TokenTree::Group(g) => {
                let (open, close) = match g.delimiter() {
                    Delimiter::Parenthesis => ("(", ")"),
                    Delimiter::Bracket => ("[", "]"),
                    Delimiter::Brace => ("{", "}"),
                    Delimiter::None => ("", ""),
                };
                out.push_str(open);
                write_tokens(g.stream(), out);
                out.push_str(close);
                word = g.delimiter() == Delimiter::None;
            }
        }
    }
}
