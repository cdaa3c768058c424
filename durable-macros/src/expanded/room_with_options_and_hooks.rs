#[allow(dead_code)]
impl Room {
    #[doc(hidden)]
    pub const __DURABLE_CLASS: ::core::option::Option<::durable_runtime::ClassOptions> = {
        #[allow(unused_mut)]
        let mut options = ::durable_runtime::ClassOptions::named("Room");
        options.renamed_from = ::core::option::Option::Some("ChatRoom");
        options.max_queue = 64;
        ::core::option::Option::Some(options)
    };
    /// Checked on the struct instead (below).
    #[doc(hidden)]
    pub fn __durable_object_must_be_send_and_sync() {}
}
const _: fn() = || {
    fn a_durable_object_must_be_send_and_sync<
        T: ::core::marker::Send + ::core::marker::Sync,
    >() {}
    a_durable_object_must_be_send_and_sync::<Room>();
};

#[doc(hidden)]
#[allow(non_camel_case_types, private_interfaces, dead_code)]
pub enum __RoomSharedCall {}
#[doc(hidden)]
#[allow(non_camel_case_types, private_interfaces, dead_code)]
pub enum __RoomExclusiveCall {
    post_message { author: String, text: String },
    clear {},
}
#[doc(hidden)]
#[allow(non_camel_case_types, private_interfaces, dead_code)]
pub enum __RoomOutput {
    post_message(Result<u64, RoomError>),
    clear(()),
}
/// The class's options and its method IDs, for the `DurableObject` impl. Calls are
/// told apart on the wire by these IDs, never by their position in the enums.
#[allow(non_upper_case_globals)]
impl __RoomOutput {
    const __CLASS: ::durable_runtime::ClassOptions = {
        #[allow(unused_imports)]
        use ::durable_runtime::__private::UndeclaredClass as _;
        ::durable_runtime::__private::class_options(Room::__DURABLE_CLASS, "Room")
    };
    const __ID_post_message: u64 = ::durable_runtime::MethodSchema::method_id(
        Self::__CLASS.wire_name(),
        "post",
    );
    const __ID_clear: u64 = ::durable_runtime::MethodSchema::method_id(
        Self::__CLASS.wire_name(),
        "clear",
    );
}
///The typed stub of [`Room`]: each method sends a call to one `Room` object and waits for its reply. Cheap to clone; get one from `Namespace<Room>::get`.
pub struct RoomStub
where
    for<'__durable> Room: ::durable_runtime::DurableObject,
{
    __stub: ::durable_runtime::Stub<Room>,
}
impl ::core::clone::Clone for RoomStub
where
    for<'__durable> Room: ::durable_runtime::DurableObject,
{
    fn clone(&self) -> Self {
        RoomStub {
            __stub: ::core::clone::Clone::clone(&self.__stub),
        }
    }
}
impl ::core::fmt::Debug for RoomStub
where
    for<'__durable> Room: ::durable_runtime::DurableObject,
{
    fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
        ::core::fmt::Debug::fmt(&self.__stub, f)
    }
}
impl ::core::convert::From<::durable_runtime::Stub<Room>> for RoomStub
where
    for<'__durable> Room: ::durable_runtime::DurableObject,
{
    fn from(stub: ::durable_runtime::Stub<Room>) -> Self {
        RoomStub { __stub: stub }
    }
}
impl ::durable_runtime::ObjectStub for RoomStub
where
    for<'__durable> Room: ::durable_runtime::DurableObject,
{
    type Object = Room;
    fn stub(&self) -> &::durable_runtime::Stub<Room> {
        &self.__stub
    }
}
#[allow(clippy::needless_lifetimes, deprecated)]
impl RoomStub
where
    for<'__durable> Room: ::durable_runtime::DurableObject,
{
    /// Posts a message.
    pub async fn post_message(
        &self,
        author: String,
        text: String,
    ) -> Result<u64, RoomError> {
        match self
            .__stub
            .call(
                ::durable_runtime::__private::Call::Exclusive(__RoomExclusiveCall::post_message {
                    author,
                    text,
                }),
            )
            .await
        {
            ::core::result::Result::Ok(__RoomOutput::post_message(value)) => value,
            reply => {
                <Result<
                    u64,
                    RoomError,
                > as ::durable_runtime::__private::FromRuntimeError>::from_runtime_error(
                    ::durable_runtime::__private::reply_error(reply),
                )
            }
        }
    }
    ///Calls `Room::clear` on the object.
    pub async fn clear(&self) -> ::durable_runtime::Result<()> {
        match self
            .__stub
            .call(
                ::durable_runtime::__private::Call::Exclusive(__RoomExclusiveCall::clear {}),
            )
            .await
        {
            ::core::result::Result::Ok(__RoomOutput::clear(value)) => {
                ::core::result::Result::Ok(value)
            }
            reply => {
                <::durable_runtime::Result<
                    (),
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
    Room::__durable_object_must_be_send_and_sync();
    (&&::durable_runtime::__private::WireProbe::<String>::new()).assert_wire();
    (&&::durable_runtime::__private::WireProbe::<String>::new()).assert_wire();
    (&&::durable_runtime::__private::WireProbe::<u64>::new()).assert_wire();
    (&&::durable_runtime::__private::WireProbe::<RoomError>::new()).assert_wire();
};
#[allow(deprecated, clippy::type_complexity)]
impl ::durable_runtime::DurableObject for Room
where
    for<'__durable> Room: ::core::marker::Send + ::core::marker::Sync,
{
    type SharedCall = __RoomSharedCall;
    type ExclusiveCall = __RoomExclusiveCall;
    type Output = __RoomOutput;
    type Stub = RoomStub;
    fn class_options() -> ::durable_runtime::ClassOptions {
        __RoomOutput::__CLASS
    }
    fn activate(ctx: ::durable_runtime::Context) -> Self {
        Room::new(ctx)
    }
    fn method_name(
        call: &::durable_runtime::__private::Call<__RoomSharedCall, __RoomExclusiveCall>,
    ) -> &'static str {
        match call {
            ::durable_runtime::__private::Call::Shared(call) => match *call {}
            ::durable_runtime::__private::Call::Exclusive(call) => {
                match *call {
                    __RoomExclusiveCall::post_message { .. } => "post",
                    __RoomExclusiveCall::clear { .. } => "clear",
                }
            }
        }
    }
    fn dispatch_shared(
        &self,
        call: __RoomSharedCall,
    ) -> impl ::core::future::Future<Output = __RoomOutput> + ::core::marker::Send + '_ {
        async move { match call {} }
    }
    fn dispatch_exclusive(
        &mut self,
        call: __RoomExclusiveCall,
    ) -> impl ::core::future::Future<Output = __RoomOutput> + ::core::marker::Send + '_ {
        async move {
            match call {
                __RoomExclusiveCall::post_message { author, text } => {
                    __RoomOutput::post_message({
                        let __future: ::core::pin::Pin<
                            &mut (dyn ::core::future::Future<
                                Output = Result<u64, RoomError>,
                            > + ::core::marker::Send),
                        > = ::core::pin::pin!(Room::post_message(self, author, text));
                        __future.await
                    })
                }
                __RoomExclusiveCall::clear {} => {
                    __RoomOutput::clear({
                        let __future: ::core::pin::Pin<
                            &mut (dyn ::core::future::Future<
                                Output = (),
                            > + ::core::marker::Send),
                        > = ::core::pin::pin!(Room::clear(self));
                        __future.await
                    })
                }
            }
        }
    }
    fn dispatch_alarm(
        &mut self,
        info: ::durable_runtime::AlarmInfo,
    ) -> impl ::core::future::Future<
        Output = ::core::option::Option<::durable_runtime::Result<()>>,
    > + ::core::marker::Send + '_ {
        async move {
            ::core::option::Option::Some({
                let __future: ::core::pin::Pin<
                    &mut (dyn ::core::future::Future<
                        Output = ::durable_runtime::Result<()>,
                    > + ::core::marker::Send),
                > = ::core::pin::pin!(Room::alarm(self, info));
                __future.await
            })
        }
    }
    fn dispatch_activate(
        &mut self,
    ) -> impl ::core::future::Future<
        Output = ::durable_runtime::Result<()>,
    > + ::core::marker::Send + '_ {
        async move {
            {
                let __future: ::core::pin::Pin<
                    &mut (dyn ::core::future::Future<
                        Output = ::durable_runtime::Result<()>,
                    > + ::core::marker::Send),
                > = ::core::pin::pin!(Room::on_activate(self));
                __future.await
            }
        }
    }
    fn dispatch_evict(
        &mut self,
    ) -> impl ::core::future::Future<Output = ()> + ::core::marker::Send + '_ {
        async move {
            {
                let __future: ::core::pin::Pin<
                    &mut (dyn ::core::future::Future<Output = ()> + ::core::marker::Send),
                > = ::core::pin::pin!(Room::on_evict(self));
                __future.await
            }
        }
    }
    fn schema() -> &'static [::durable_runtime::MethodSchema] {
        const SCHEMA: &[::durable_runtime::MethodSchema] = &[
            ::durable_runtime::MethodSchema {
                name: "post_message",
                wire_name: "post",
                id: __RoomOutput::__ID_post_message,
                access: ::durable_runtime::Access::Exclusive,
                args: &[("author", "String"), ("text", "String")],
                output: "Result<u64, RoomError>",
            },
            ::durable_runtime::MethodSchema {
                name: "clear",
                wire_name: "clear",
                id: __RoomOutput::__ID_clear,
                access: ::durable_runtime::Access::Exclusive,
                args: &[],
                output: "()",
            },
        ];
        SCHEMA
    }
    fn encode_call(
        __call: &::durable_runtime::__private::Call<
            __RoomSharedCall,
            __RoomExclusiveCall,
        >,
        __out: &mut ::std::vec::Vec<u8>,
    ) -> ::durable_runtime::Result<u64> {
        #[allow(unused_imports)]
        use ::durable_runtime::__private::{
            CastOther as _, CastSame as _, WireCodecFallback as _, WireDecode as _,
            WireEncode as _,
        };
        match *__call {
            ::durable_runtime::__private::Call::Shared(ref __call) => match *__call {}
            ::durable_runtime::__private::Call::Exclusive(ref __call) => {
                match *__call {
                    __RoomExclusiveCall::post_message {
                        author: ref __arg0,
                        text: ref __arg1,
                    } => {
                        (&&::durable_runtime::__private::WireProbe::<
                            (&String, &String),
                        >::new())
                            .encode_wire(&(__arg0, __arg1), __out)?;
                        ::core::result::Result::Ok(__RoomOutput::__ID_post_message)
                    }
                    __RoomExclusiveCall::clear {} => {
                        (&&::durable_runtime::__private::WireProbe::<()>::new())
                            .encode_wire(&(), __out)?;
                        ::core::result::Result::Ok(__RoomOutput::__ID_clear)
                    }
                }
            }
        }
    }
    fn decode_call(
        __method: u64,
        __bytes: &[u8],
    ) -> ::durable_runtime::Result<
        ::durable_runtime::__private::Call<__RoomSharedCall, __RoomExclusiveCall>,
    > {
        #[allow(unused_imports)]
        use ::durable_runtime::__private::{
            CastOther as _, CastSame as _, WireCodecFallback as _, WireDecode as _,
            WireEncode as _,
        };
        match __method {
            __RoomOutput::__ID_post_message => {
                let __args: (String, String) = (&&::durable_runtime::__private::WireProbe::<
                    (String, String),
                >::new())
                    .decode_wire(
                        __RoomOutput::__CLASS.name,
                        "post",
                        "arguments",
                        __bytes,
                    )?;
                ::core::result::Result::Ok(
                    ::durable_runtime::__private::Call::Exclusive(__RoomExclusiveCall::post_message {
                        author: __args.0,
                        text: __args.1,
                    }),
                )
            }
            __RoomOutput::__ID_clear => {
                let () = (&&::durable_runtime::__private::WireProbe::<()>::new())
                    .decode_wire(
                        __RoomOutput::__CLASS.name,
                        "clear",
                        "arguments",
                        __bytes,
                    )?;
                ::core::result::Result::Ok(
                    ::durable_runtime::__private::Call::Exclusive(__RoomExclusiveCall::clear {}),
                )
            }
            __method => {
                ::core::result::Result::Err(
                    ::durable_runtime::__private::unknown_method(
                        __RoomOutput::__CLASS.name,
                        __method,
                    ),
                )
            }
        }
    }
    fn encode_output(
        __output: &__RoomOutput,
        __out: &mut ::std::vec::Vec<u8>,
    ) -> ::durable_runtime::Result<()> {
        #[allow(unused_imports)]
        use ::durable_runtime::__private::{
            CastOther as _, CastSame as _, WireCodecFallback as _, WireDecode as _,
            WireEncode as _,
        };
        match *__output {
            __RoomOutput::post_message(ref __value) => {
                (&&::durable_runtime::__private::WireProbe::<
                    Result<u64, RoomError>,
                >::new())
                    .encode_wire(__value, __out)
            }
            __RoomOutput::clear(ref __value) => {
                (&&::durable_runtime::__private::WireProbe::<()>::new())
                    .encode_wire(__value, __out)
            }
        }
    }
    fn decode_output(
        __method: u64,
        __bytes: &[u8],
    ) -> ::durable_runtime::Result<__RoomOutput> {
        #[allow(unused_imports)]
        use ::durable_runtime::__private::{
            CastOther as _, CastSame as _, WireCodecFallback as _, WireDecode as _,
            WireEncode as _,
        };
        match __method {
            __RoomOutput::__ID_post_message => {
                ::core::result::Result::map(
                    (&&::durable_runtime::__private::WireProbe::<
                        Result<u64, RoomError>,
                    >::new())
                        .decode_wire(
                            __RoomOutput::__CLASS.name,
                            "post",
                            "return value",
                            __bytes,
                        ),
                    __RoomOutput::post_message,
                )
            }
            __RoomOutput::__ID_clear => {
                ::core::result::Result::map(
                    (&&::durable_runtime::__private::WireProbe::<()>::new())
                        .decode_wire(
                            __RoomOutput::__CLASS.name,
                            "clear",
                            "return value",
                            __bytes,
                        ),
                    __RoomOutput::clear,
                )
            }
            __method => {
                ::core::result::Result::Err(
                    ::durable_runtime::__private::unknown_method(
                        __RoomOutput::__CLASS.name,
                        __method,
                    ),
                )
            }
        }
    }
}
