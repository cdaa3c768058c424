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
#[doc(hidden)]
#[allow(non_camel_case_types, private_interfaces, dead_code)]
pub enum __CounterSharedCall {
    get {},
}
#[doc(hidden)]
#[allow(non_camel_case_types, private_interfaces, dead_code)]
pub enum __CounterExclusiveCall {}
#[doc(hidden)]
#[allow(non_camel_case_types, private_interfaces, dead_code)]
pub enum __CounterOutput {
    get(Result<i64>),
}
/// The class's options and its method IDs, for the `DurableObject` impl. Calls are
/// told apart on the wire by these IDs, never by their position in the enums.
#[allow(non_upper_case_globals)]
impl __CounterOutput {
    const __CLASS: ::durable_runtime::ClassOptions = {
        #[allow(unused_imports)]
        use ::durable_runtime::__private::UndeclaredClass as _;
        ::durable_runtime::__private::class_options(Counter::__DURABLE_CLASS, "Counter")
    };
    const __ID_get: u64 = ::durable_runtime::MethodSchema::method_id(
        Self::__CLASS.wire_name(),
        "get",
    );
}
///The typed stub of [`Counter`]: each method sends a call to one `Counter` object and waits for its reply. Cheap to clone; get one from `Namespace<Counter>::get`.
pub struct CounterStub
where
    for<'__durable> Counter: ::durable_runtime::DurableObject,
{
    __stub: ::durable_runtime::Stub<Counter>,
}
impl ::core::clone::Clone for CounterStub
where
    for<'__durable> Counter: ::durable_runtime::DurableObject,
{
    fn clone(&self) -> Self {
        CounterStub {
            __stub: ::core::clone::Clone::clone(&self.__stub),
        }
    }
}
impl ::core::fmt::Debug for CounterStub
where
    for<'__durable> Counter: ::durable_runtime::DurableObject,
{
    fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
        ::core::fmt::Debug::fmt(&self.__stub, f)
    }
}
impl ::core::convert::From<::durable_runtime::Stub<Counter>> for CounterStub
where
    for<'__durable> Counter: ::durable_runtime::DurableObject,
{
    fn from(stub: ::durable_runtime::Stub<Counter>) -> Self {
        CounterStub { __stub: stub }
    }
}
impl ::durable_runtime::ObjectStub for CounterStub
where
    for<'__durable> Counter: ::durable_runtime::DurableObject,
{
    type Object = Counter;
    fn stub(&self) -> &::durable_runtime::Stub<Counter> {
        &self.__stub
    }
}
#[allow(clippy::needless_lifetimes, deprecated)]
impl CounterStub
where
    for<'__durable> Counter: ::durable_runtime::DurableObject,
{
    ///Calls `Counter::get` on the object.
    pub async fn get(&self) -> Result<i64> {
        match self
            .__stub
            .call(
                ::durable_runtime::__private::Call::Shared(__CounterSharedCall::get {}),
            )
            .await
        {
            ::core::result::Result::Ok(__CounterOutput::get(value)) => value,
            reply => {
                <Result<
                    i64,
                > as ::durable_runtime::__private::FromRuntimeError>::from_runtime_error(
                    ::durable_runtime::__private::reply_error(reply),
                )
            }
        }
    }
}
const _: fn() = || {
    #[allow(unused_imports)]
    use ::durable_runtime::__private::{
        UndeclaredClass as _, WireFallback as _, WireSerialize as _,
    };
    Counter::__durable_object_must_be_send_and_sync();
    (&&::durable_runtime::__private::WireProbe::<i64>::new()).assert_wire();
};
#[allow(deprecated, clippy::type_complexity)]
impl ::durable_runtime::DurableObject for Counter
where
    for<'__durable> Counter: ::core::marker::Send + ::core::marker::Sync,
{
    type SharedCall = __CounterSharedCall;
    type ExclusiveCall = __CounterExclusiveCall;
    type Output = __CounterOutput;
    type Stub = CounterStub;
    fn class_options() -> ::durable_runtime::ClassOptions {
        __CounterOutput::__CLASS
    }
    fn activate(ctx: ::durable_runtime::Context) -> Self {
        Counter::new(ctx)
    }
    fn method_name(
        call: &::durable_runtime::__private::Call<
            __CounterSharedCall,
            __CounterExclusiveCall,
        >,
    ) -> &'static str {
        match call {
            ::durable_runtime::__private::Call::Shared(call) => {
                match *call {
                    __CounterSharedCall::get { .. } => "get",
                }
            }
            ::durable_runtime::__private::Call::Exclusive(call) => match *call {}
        }
    }
    fn dispatch_shared(
        &self,
        call: __CounterSharedCall,
    ) -> impl ::core::future::Future<
        Output = __CounterOutput,
    > + ::core::marker::Send + '_ {
        async move {
            match call {
                __CounterSharedCall::get {} => {
                    __CounterOutput::get({
                        let __future: ::core::pin::Pin<
                            &mut (dyn ::core::future::Future<
                                Output = Result<i64>,
                            > + ::core::marker::Send),
                        > = ::core::pin::pin!(Counter::get(self));
                        __future.await
                    })
                }
            }
        }
    }
    fn dispatch_exclusive(
        &mut self,
        call: __CounterExclusiveCall,
    ) -> impl ::core::future::Future<
        Output = __CounterOutput,
    > + ::core::marker::Send + '_ {
        async move { match call {} }
    }
    fn schema() -> &'static [::durable_runtime::MethodSchema] {
        const SCHEMA: &[::durable_runtime::MethodSchema] = &[
            ::durable_runtime::MethodSchema {
                name: "get",
                wire_name: "get",
                id: __CounterOutput::__ID_get,
                access: ::durable_runtime::Access::Shared,
                args: &[],
                output: "Result<i64>",
            },
        ];
        SCHEMA
    }
    fn encode_call(
        __call: &::durable_runtime::__private::Call<
            __CounterSharedCall,
            __CounterExclusiveCall,
        >,
        __out: &mut ::std::vec::Vec<u8>,
    ) -> ::durable_runtime::Result<u64> {
        #[allow(unused_imports)]
        use ::durable_runtime::__private::{
            CastOther as _, CastSame as _, WireCodecFallback as _, WireDecode as _,
            WireEncode as _,
        };
        match *__call {
            ::durable_runtime::__private::Call::Shared(ref __call) => {
                match *__call {
                    __CounterSharedCall::get {} => {
                        (&&::durable_runtime::__private::WireProbe::<()>::new())
                            .encode_wire(&(), __out)?;
                        ::core::result::Result::Ok(__CounterOutput::__ID_get)
                    }
                }
            }
            ::durable_runtime::__private::Call::Exclusive(ref __call) => match *__call {}
        }
    }
    fn decode_call(
        __method: u64,
        __bytes: &[u8],
    ) -> ::durable_runtime::Result<
        ::durable_runtime::__private::Call<__CounterSharedCall, __CounterExclusiveCall>,
    > {
        #[allow(unused_imports)]
        use ::durable_runtime::__private::{
            CastOther as _, CastSame as _, WireCodecFallback as _, WireDecode as _,
            WireEncode as _,
        };
        match __method {
            __CounterOutput::__ID_get => {
                let () = (&&::durable_runtime::__private::WireProbe::<()>::new())
                    .decode_wire(
                        __CounterOutput::__CLASS.name,
                        "get",
                        "arguments",
                        __bytes,
                    )?;
                ::core::result::Result::Ok(
                    ::durable_runtime::__private::Call::Shared(__CounterSharedCall::get {}),
                )
            }
            __method => {
                ::core::result::Result::Err(
                    ::durable_runtime::__private::unknown_method(
                        __CounterOutput::__CLASS.name,
                        __method,
                    ),
                )
            }
        }
    }
    fn encode_output(
        __output: &__CounterOutput,
        __out: &mut ::std::vec::Vec<u8>,
    ) -> ::durable_runtime::Result<()> {
        #[allow(unused_imports)]
        use ::durable_runtime::__private::{
            CastOther as _, CastSame as _, WireCodecFallback as _, WireDecode as _,
            WireEncode as _,
        };
        match *__output {
            __CounterOutput::get(ref __value) => {
                (&&::durable_runtime::__private::WireProbe::<Result<i64>>::new())
                    .encode_wire(__value, __out)
            }
        }
    }
    fn decode_output(
        __method: u64,
        __bytes: &[u8],
    ) -> ::durable_runtime::Result<__CounterOutput> {
        #[allow(unused_imports)]
        use ::durable_runtime::__private::{
            CastOther as _, CastSame as _, WireCodecFallback as _, WireDecode as _,
            WireEncode as _,
        };
        match __method {
            __CounterOutput::__ID_get => {
                ::core::result::Result::map(
                    (&&::durable_runtime::__private::WireProbe::<Result<i64>>::new())
                        .decode_wire(
                            __CounterOutput::__CLASS.name,
                            "get",
                            "return value",
                            __bytes,
                        ),
                    __CounterOutput::get,
                )
            }
            __method => {
                ::core::result::Result::Err(
                    ::durable_runtime::__private::unknown_method(
                        __CounterOutput::__CLASS.name,
                        __method,
                    ),
                )
            }
        }
    }
}
::core::compile_error! {
    "a durable object method takes `&self` (a shared call) or `&mut self` (an exclusive call), not `self` by value: the object lives on after the call"
}
::core::compile_error! {
    "an argument type cannot borrow: calls cross the wire and run later; use an owned type (`String` for `&str`, `Vec<T>` for `&[T]`)"
}
