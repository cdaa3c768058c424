#[allow(dead_code)]
impl Counter {
    #[doc(hidden)]
    pub const __DURABLE_CLASS: ::core::option::Option<::durable_runtime::ClassOptions> = {
        #[allow(unused_mut)]
        let mut options = ::durable_runtime::ClassOptions::named("Counter");
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
    a_durable_object_must_be_send_and_sync::<Counter>();
};
