#[doc(hidden)]
#[allow(non_camel_case_types, private_interfaces, dead_code)]
pub enum __CounterSharedCall {
    get_counter_value {},
}
#[doc(hidden)]
#[allow(non_camel_case_types, private_interfaces, dead_code)]
pub enum __CounterExclusiveCall {
    increment { amount: i64 },
}
#[doc(hidden)]
#[allow(non_camel_case_types, private_interfaces, dead_code)]
pub enum __CounterOutput {
    get_counter_value(Result<i64>),
    increment(Result<i64>),
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
    const __ID_get_counter_value: u64 = ::durable_runtime::MethodSchema::method_id(
        Self::__CLASS.wire_name(),
        "get_counter_value",
    );
    const __ID_increment: u64 = ::durable_runtime::MethodSchema::method_id(
        Self::__CLASS.wire_name(),
        "increment",
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
    ///Calls `Counter::get_counter_value` on the object.
    pub async fn get_counter_value(&self) -> Result<i64> {
        match self
            .__stub
            .call(
                ::durable_runtime::__private::Call::Shared(__CounterSharedCall::get_counter_value {}),
            )
            .await
        {
            ::core::result::Result::Ok(__CounterOutput::get_counter_value(value)) => {
                value
            }
            reply => {
                <Result<
                    i64,
                > as ::durable_runtime::__private::FromRuntimeError>::from_runtime_error(
                    ::durable_runtime::__private::reply_error(reply),
                )
            }
        }
    }
    ///Calls `Counter::increment` on the object.
    pub async fn increment(&self, amount: i64) -> Result<i64> {
        match self
            .__stub
            .call(
                ::durable_runtime::__private::Call::Exclusive(__CounterExclusiveCall::increment {
                    amount,
                }),
            )
            .await
        {
            ::core::result::Result::Ok(__CounterOutput::increment(value)) => value,
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
    (&&::durable_runtime::__private::WireProbe::<i64>::new()).assert_wire();
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
                    __CounterSharedCall::get_counter_value { .. } => "get_counter_value",
                }
            }
            ::durable_runtime::__private::Call::Exclusive(call) => {
                match *call {
                    __CounterExclusiveCall::increment { .. } => "increment",
                }
            }
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
                __CounterSharedCall::get_counter_value {} => {
                    __CounterOutput::get_counter_value({
                        let __future: ::core::pin::Pin<
                            &mut (dyn ::core::future::Future<
                                Output = Result<i64>,
                            > + ::core::marker::Send),
                        > = ::core::pin::pin!(Counter::get_counter_value(self));
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
        async move {
            match call {
                __CounterExclusiveCall::increment { amount } => {
                    __CounterOutput::increment({
                        let __future: ::core::pin::Pin<
                            &mut (dyn ::core::future::Future<
                                Output = Result<i64>,
                            > + ::core::marker::Send),
                        > = ::core::pin::pin!(Counter::increment(self, amount));
                        __future.await
                    })
                }
            }
        }
    }
    fn schema() -> &'static [::durable_runtime::MethodSchema] {
        const SCHEMA: &[::durable_runtime::MethodSchema] = &[
            ::durable_runtime::MethodSchema {
                name: "get_counter_value",
                wire_name: "get_counter_value",
                id: __CounterOutput::__ID_get_counter_value,
                access: ::durable_runtime::Access::Shared,
                args: &[],
                output: "Result<i64>",
            },
            ::durable_runtime::MethodSchema {
                name: "increment",
                wire_name: "increment",
                id: __CounterOutput::__ID_increment,
                access: ::durable_runtime::Access::Exclusive,
                args: &[("amount", "i64")],
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
                    __CounterSharedCall::get_counter_value {} => {
                        (&&::durable_runtime::__private::WireProbe::<()>::new())
                            .encode_wire(&(), __out)?;
                        ::core::result::Result::Ok(
                            __CounterOutput::__ID_get_counter_value,
                        )
                    }
                }
            }
            ::durable_runtime::__private::Call::Exclusive(ref __call) => {
                match *__call {
                    __CounterExclusiveCall::increment { amount: ref __arg0 } => {
                        (&&::durable_runtime::__private::WireProbe::<(&i64,)>::new())
                            .encode_wire(&(__arg0,), __out)?;
                        ::core::result::Result::Ok(__CounterOutput::__ID_increment)
                    }
                }
            }
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
            __CounterOutput::__ID_get_counter_value => {
                let () = (&&::durable_runtime::__private::WireProbe::<()>::new())
                    .decode_wire(
                        __CounterOutput::__CLASS.name,
                        "get_counter_value",
                        "arguments",
                        __bytes,
                    )?;
                ::core::result::Result::Ok(
                    ::durable_runtime::__private::Call::Shared(__CounterSharedCall::get_counter_value {}),
                )
            }
            __CounterOutput::__ID_increment => {
                let __args: (i64,) = (&&::durable_runtime::__private::WireProbe::<
                    (i64,),
                >::new())
                    .decode_wire(
                        __CounterOutput::__CLASS.name,
                        "increment",
                        "arguments",
                        __bytes,
                    )?;
                ::core::result::Result::Ok(
                    ::durable_runtime::__private::Call::Exclusive(__CounterExclusiveCall::increment {
                        amount: __args.0,
                    }),
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
            __CounterOutput::get_counter_value(ref __value) => {
                (&&::durable_runtime::__private::WireProbe::<Result<i64>>::new())
                    .encode_wire(__value, __out)
            }
            __CounterOutput::increment(ref __value) => {
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
            __CounterOutput::__ID_get_counter_value => {
                ::core::result::Result::map(
                    (&&::durable_runtime::__private::WireProbe::<Result<i64>>::new())
                        .decode_wire(
                            __CounterOutput::__CLASS.name,
                            "get_counter_value",
                            "return value",
                            __bytes,
                        ),
                    __CounterOutput::get_counter_value,
                )
            }
            __CounterOutput::__ID_increment => {
                ::core::result::Result::map(
                    (&&::durable_runtime::__private::WireProbe::<Result<i64>>::new())
                        .decode_wire(
                            __CounterOutput::__CLASS.name,
                            "increment",
                            "return value",
                            __bytes,
                        ),
                    __CounterOutput::increment,
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
