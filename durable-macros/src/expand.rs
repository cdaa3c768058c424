//! From the model to code. Every path is absolute (`::durable_runtime::..`, `::core::..`), so
//! the code works under `#![no_implicit_prelude]`; internal names start with `__`.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use crate::model::{Access, Class, Method, Object};

/// The struct side: the declared options, and the `Send + Sync` check on the user's struct.
pub fn class(class: &Class) -> TokenStream {
    let ident = &class.ident;
    let name = match &class.name {
        Some(lit) => quote!(#lit),
        None => {
            let s = ident.to_string();
            quote!(#s)
        }
    };
    let renamed_from = match &class.renamed_from {
        Some(lit) => quote!(::core::option::Option::Some(#lit)),
        None => quote!(::core::option::Option::None),
    };
    let max_queue = match &class.max_queue {
        Some(lit) => quote!(#lit),
        None => quote!(::durable_runtime::ClassOptions::DEFAULT_MAX_QUEUE),
    };
    let assert = quote_spanned! {ident.span()=>
        const _: fn() = || {
            ::durable_runtime::__private::assert_object::<#ident>();
        };
    };
    quote! {
        impl ::durable_runtime::__private::DeclaredClass for #ident {
            const OPTIONS: ::durable_runtime::ClassOptions = ::durable_runtime::ClassOptions {
                name: #name,
                renamed_from: #renamed_from,
                max_queue: #max_queue,
            };
        }
        #assert
    }
}

/// The impl side: call enums, the typed stub, and the `DurableObject` impl.
pub fn object(object: &Object) -> TokenStream {
    let ident = &object.ident;
    let vis = &object.vis;
    let class_name = ident.to_string();
    let stub = format_ident!("{}Stub", ident);
    let shared_enum = format_ident!("__{}SharedCall", ident);
    let exclusive_enum = format_ident!("__{}ExclusiveCall", ident);
    let output_enum = format_ident!("__{}Output", ident);

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

    let names = |access: Access, enum_ident: &syn::Ident| {
        let arms = of(access).map(|m| {
            let (name, wire) = (&m.ident, &m.wire_name);
            quote!(#enum_ident::#name { .. } => #wire,)
        });
        quote!(match *call { #(#arms)* })
    };
    let shared_names = names(Access::Shared, &shared_enum);
    let exclusive_names = names(Access::Exclusive, &exclusive_enum);

    let dispatch = |access: Access, enum_ident: &syn::Ident| {
        let arms = of(access).map(|m| {
            let name = &m.ident;
            let args: Vec<_> = m.args.iter().map(|a| &a.ident).collect();
            quote! {
                #enum_ident::#name { #(#args,)* } =>
                    #output_enum::#name(#ident::#name(self, #(#args),*).await),
            }
        });
        quote!(match call { #(#arms)* })
    };
    let dispatch_shared = dispatch(Access::Shared, &shared_enum);
    let dispatch_exclusive = dispatch(Access::Exclusive, &exclusive_enum);

    let stub_methods = object
        .methods
        .iter()
        .map(|m| stub_method(m, &shared_enum, &exclusive_enum, &output_enum));
    let asserts = object.methods.iter().flat_map(|m| {
        let args = m.args.iter().map(|a| {
            let ty = &a.ty;
            quote_spanned! {ty.span()=> ::durable_runtime::__private::assert_wire::<#ty>(); }
        });
        let out = &m.output;
        let ret =
            quote_spanned! {out.span()=> ::durable_runtime::__private::assert_wire::<#out>(); };
        args.chain(::core::iter::once(ret))
    });
    let stub_doc = format!(
        "The typed stub of [`{ident}`]: each method sends a call to one `{ident}` object and \
         waits for its reply. Cheap to clone; get one from `Namespace<{ident}>::get`."
    );

    quote! {
        #[doc(hidden)]
        #[allow(non_camel_case_types, private_interfaces, dead_code)]
        #vis enum #shared_enum { #(#shared_variants,)* }

        #[doc(hidden)]
        #[allow(non_camel_case_types, private_interfaces, dead_code)]
        #vis enum #exclusive_enum { #(#exclusive_variants,)* }

        #[doc(hidden)]
        #[allow(non_camel_case_types, private_interfaces, dead_code)]
        #vis enum #output_enum { #(#output_variants,)* }

        #[doc = #stub_doc]
        #vis struct #stub {
            __stub: ::durable_runtime::Stub<#ident>,
        }

        impl ::core::clone::Clone for #stub {
            fn clone(&self) -> Self {
                #stub { __stub: ::core::clone::Clone::clone(&self.__stub) }
            }
        }

        impl ::core::fmt::Debug for #stub {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                ::core::fmt::Debug::fmt(&self.__stub, f)
            }
        }

        impl ::core::convert::From<::durable_runtime::Stub<#ident>> for #stub {
            fn from(stub: ::durable_runtime::Stub<#ident>) -> Self {
                #stub { __stub: stub }
            }
        }

        impl ::durable_runtime::ObjectStub for #stub {
            type Object = #ident;
            fn stub(&self) -> &::durable_runtime::Stub<#ident> {
                &self.__stub
            }
        }

        #[allow(clippy::needless_lifetimes)]
        impl #stub {
            #(#stub_methods)*
        }

        const _: fn() = || {
            #(#asserts)*
        };

        impl ::durable_runtime::DurableObject for #ident {
            type SharedCall = #shared_enum;
            type ExclusiveCall = #exclusive_enum;
            type Output = #output_enum;
            type Stub = #stub;

            fn class_options() -> ::durable_runtime::ClassOptions {
                #[allow(unused_imports)]
                use ::durable_runtime::__private::{ViaDeclared as _, ViaDefault as _};
                (&&::durable_runtime::__private::Probe::<#ident>::new()).class_options(#class_name)
            }

            fn activate(ctx: ::durable_runtime::Context) -> Self {
                #ident::new(ctx)
            }

            fn method_name(
                call: &::durable_runtime::__private::Call<#shared_enum, #exclusive_enum>,
            ) -> &'static str {
                match call {
                    ::durable_runtime::__private::Call::Shared(call) => #shared_names,
                    ::durable_runtime::__private::Call::Exclusive(call) => #exclusive_names,
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
        }
    }
}

fn stub_method(
    m: &Method,
    shared_enum: &syn::Ident,
    exclusive_enum: &syn::Ident,
    output_enum: &syn::Ident,
) -> TokenStream {
    let name = &m.ident;
    let docs = &m.docs;
    let params = m.args.iter().map(|a| {
        let (i, t) = (&a.ident, &a.ty);
        quote!(#i: #t)
    });
    let args = m.args.iter().map(|a| &a.ident);
    let call = match m.access {
        Access::Shared => {
            quote!(::durable_runtime::__private::Call::Shared(#shared_enum::#name { #(#args,)* }))
        }
        Access::Exclusive => {
            quote!(::durable_runtime::__private::Call::Exclusive(#exclusive_enum::#name { #(#args,)* }))
        }
    };
    let out = &m.output;
    let (ret, ok) = if m.returns_result {
        (quote!(#out), quote!(value))
    } else {
        (
            quote!(::durable_runtime::Result<#out>),
            quote!(::core::result::Result::Ok(value)),
        )
    };
    quote! {
        #(#docs)*
        #[allow(unreachable_patterns)]
        pub async fn #name(&self, #(#params),*) -> #ret {
            match self.__stub.call(#call).await {
                ::core::result::Result::Ok(#output_enum::#name(value)) => #ok,
                ::core::result::Result::Ok(_) => {
                    <#ret as ::durable_runtime::__private::FromRuntimeError>::from_runtime_error(
                        ::durable_runtime::Error::internal("a reply of another method"),
                    )
                }
                ::core::result::Result::Err(err) => {
                    <#ret as ::durable_runtime::__private::FromRuntimeError>::from_runtime_error(err)
                }
            }
        }
    }
}
