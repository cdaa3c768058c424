//! The wire codec `#[durable_object]` generates (`encode_call`/`decode_call`,
//! `encode_output`/`decode_output`): calls and outputs survive the trip through bytes, methods
//! are keyed by their schema's method ID, bad bytes are errors (never panics), and the encoding
//! itself is pinned by golden bytes.

use std::collections::BTreeMap;
use std::fmt::Debug;

use durable_runtime::__private::{self, Call};
use durable_runtime::{
    durable_object, Context, DurableObject, Error, ErrorKind, MethodSchema, ObjectStub, Result,
    Runtime,
};
use durable_tests::Counter;
use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------------
// A class with every shape of call: shared and exclusive, zero, one and several arguments, user
// structs, `Result<T>`, `Result<T, E>` with a typed error, plain and unit returns.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub name: String,
    pub price: u32,
    pub tags: Vec<String>,
}

/// A typed user error: it crosses the wire as itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ShopError {
    OutOfStock { name: String, left: u32 },
    Runtime(Error),
}

impl From<Error> for ShopError {
    fn from(err: Error) -> Self {
        ShopError::Runtime(err)
    }
}

#[durable_object]
pub struct Shop {
    ctx: Context,
}

type Stock = BTreeMap<String, (Item, u32)>;

#[durable_object]
impl Shop {
    pub fn new(ctx: Context) -> Self {
        Shop { ctx }
    }

    fn stock(&self) -> Result<Stock> {
        Ok(self.ctx.storage().get("stock")?.unwrap_or_default())
    }

    /// Shared, no argument, `Result<T>`.
    pub async fn count(&self) -> Result<u64> {
        Ok(self.stock()?.values().map(|(_, n)| u64::from(*n)).sum())
    }

    /// Shared, several arguments (a user struct among them), a plain return.
    pub async fn describe(&self, item: Item, qty: u32, note: Option<String>) -> String {
        format!(
            "{qty} x {} at {} {:?} {note:?}",
            item.name, item.price, item.tags
        )
    }

    /// Shared, one argument, a plain `Option` return.
    pub async fn find(&self, names: Vec<String>) -> Option<Vec<String>> {
        let stock = self.stock().ok()?;
        let found: Vec<String> = names
            .into_iter()
            .filter(|n| stock.contains_key(n))
            .collect();
        (!found.is_empty()).then_some(found)
    }

    /// Exclusive, a user struct and a number, `Result<T>` (an application error for free items).
    pub async fn add(&mut self, item: Item, qty: u32) -> Result<u32> {
        if item.price == 0 {
            return Err(Error::app("Free", format!("{} has no price", item.name)));
        }
        let mut stock = self.stock()?;
        let entry = stock.entry(item.name.clone()).or_insert((item, 0));
        entry.1 += qty;
        let now = entry.1;
        self.ctx.storage_mut().put("stock", &stock)?;
        Ok(now)
    }

    /// Exclusive, `Result<T, E>` with a typed error.
    pub async fn take(&mut self, name: String, qty: u32) -> Result<Item, ShopError> {
        let mut stock = self.stock()?;
        let left = stock.get(&name).map_or(0, |(_, n)| *n);
        if left < qty {
            return Err(ShopError::OutOfStock { name, left });
        }
        let Some((item, n)) = stock.get_mut(&name) else {
            return Err(ShopError::OutOfStock { name, left });
        };
        *n -= qty;
        let item = item.clone();
        self.ctx.storage_mut().put("stock", &stock)?;
        Ok(item)
    }

    /// Exclusive, one argument, no return value; renamed on the wire.
    #[durable(rename = "restock")]
    pub async fn set_all(&mut self, qty: u32) {
        if let Ok(mut stock) = self.stock() {
            stock.values_mut().for_each(|(_, n)| *n = qty);
            let _ = self.ctx.storage_mut().put("stock", &stock);
        }
    }

    /// Exclusive, no argument, no return value.
    pub async fn clear(&mut self) {
        let _ = self.ctx.storage_mut().delete("stock");
    }
}

/// The same class after a rename: its method IDs are those of `Shop`.
#[durable_object(name = "Store", renamed_from = "Shop")]
pub struct Store {
    ctx: Context,
}

#[durable_object]
impl Store {
    pub fn new(ctx: Context) -> Self {
        Store { ctx }
    }

    pub async fn count(&self) -> Result<u64> {
        let stock: Stock = self.ctx.storage().get("stock")?.unwrap_or_default();
        Ok(stock.values().map(|(_, n)| u64::from(*n)).sum())
    }
}

type ShopCall = Call<<Shop as DurableObject>::SharedCall, <Shop as DurableObject>::ExclusiveCall>;
type Shared = <Shop as DurableObject>::SharedCall;
type Exclusive = <Shop as DurableObject>::ExclusiveCall;
type Output = <Shop as DurableObject>::Output;

fn apple() -> Item {
    Item {
        name: "apple".into(),
        price: 3,
        tags: vec!["fruit".into(), "red".into()],
    }
}

/// The method ID of `T`'s method `wire_name`, from its schema.
fn id_of<T: DurableObject>(wire_name: &str) -> u64 {
    T::schema()
        .iter()
        .find(|m| m.wire_name == wire_name)
        .unwrap_or_else(|| panic!("no method {wire_name} in the schema"))
        .id
}

fn encode_call(call: &ShopCall) -> (u64, Vec<u8>) {
    let mut args = Vec::new();
    let id = Shop::encode_call(call, &mut args).expect("a call encodes");
    (id, args)
}

fn encoded<V: Serialize>(value: &V) -> Vec<u8> {
    let mut out = Vec::new();
    __private::encode(value, &mut out).expect("a value encodes");
    out
}

fn encode_output(output: &Output) -> Vec<u8> {
    let mut out = Vec::new();
    Shop::encode_output(output, &mut out).expect("an output encodes");
    out
}

// ---------------------------------------------------------------------------------------------
// Calls.

/// Sends `call` through the codec to `wire` and checks that its reply encodes exactly as
/// `direct`, the reply of the same call made through the typed stub to an object with the same
/// history.
async fn same_as_direct<R: Serialize>(wire: &ShopStub, call: ShopCall, direct: R) {
    let name = Shop::method_name(&call);
    let (id, args) = encode_call(&call);
    assert_eq!(id, id_of::<Shop>(name), "{name}: the ID is the schema's");
    let decoded = Shop::decode_call(id, &args).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(Shop::method_name(&decoded), name);
    assert_eq!(encode_call(&decoded), (id, args), "{name}: re-encoded");
    let output = wire
        .stub()
        .call(decoded)
        .await
        .expect("the call is delivered");
    assert_eq!(
        encode_output(&output),
        encoded(&direct),
        "{name}: the reply"
    );
}

#[tokio::test]
async fn a_decoded_call_does_what_the_direct_call_does() {
    let rt = Runtime::in_memory();
    let shops = rt.namespace::<Shop>();
    let (direct, wire) = (shops.get_by_name("direct"), shops.get_by_name("wire"));
    let free = Item {
        name: "air".into(),
        price: 0,
        tags: vec![],
    };
    let names = || vec!["apple".to_owned(), "pear".to_owned()];

    let count = || Call::Shared(Shared::count {});
    same_as_direct(&wire, count(), direct.count().await).await;
    let call = Call::Exclusive(Exclusive::add {
        item: apple(),
        qty: 5,
    });
    same_as_direct(&wire, call, direct.add(apple(), 5).await).await;
    let call = Call::Exclusive(Exclusive::add {
        item: free.clone(),
        qty: 1,
    });
    let refused = direct.add(free.clone(), 1).await;
    assert_eq!(refused.as_ref().unwrap_err().app_kind(), Some("Free"));
    same_as_direct(&wire, call, refused).await;
    let call = Call::Shared(Shared::describe {
        item: apple(),
        qty: 2,
        note: Some("gift".into()),
    });
    let described = direct.describe(apple(), 2, Some("gift".into())).await;
    same_as_direct(&wire, call, described.unwrap()).await;
    let call = Call::Shared(Shared::find { names: names() });
    same_as_direct(&wire, call, direct.find(names()).await.unwrap()).await;
    let call = Call::Shared(Shared::find { names: vec![] });
    same_as_direct(&wire, call, direct.find(vec![]).await.unwrap()).await;
    let call = Call::Exclusive(Exclusive::take {
        name: "apple".into(),
        qty: 2,
    });
    same_as_direct(&wire, call, direct.take("apple".into(), 2).await).await;
    let call = Call::Exclusive(Exclusive::take {
        name: "apple".into(),
        qty: 9,
    });
    let short = direct.take("apple".into(), 9).await;
    assert!(matches!(short, Err(ShopError::OutOfStock { left: 3, .. })));
    same_as_direct(&wire, call, short).await;
    same_as_direct(&wire, count(), direct.count().await).await;
    let call = Call::Exclusive(Exclusive::set_all { qty: 7 });
    direct.set_all(7).await.unwrap();
    same_as_direct(&wire, call, ()).await;
    same_as_direct(&wire, count(), direct.count().await).await;
    let call = Call::Exclusive(Exclusive::clear {});
    direct.clear().await.unwrap();
    same_as_direct(&wire, call, ()).await;
    same_as_direct(&wire, count(), direct.count().await).await;

    // Both objects went through the same history.
    assert_eq!(wire.count().await.unwrap(), 0);
}

#[test]
fn method_ids_are_the_schemas_and_derive_from_class_and_wire_name() {
    let calls: Vec<ShopCall> = vec![
        Call::Shared(Shared::count {}),
        Call::Shared(Shared::describe {
            item: apple(),
            qty: 1,
            note: None,
        }),
        Call::Shared(Shared::find { names: vec![] }),
        Call::Exclusive(Exclusive::add {
            item: apple(),
            qty: 1,
        }),
        Call::Exclusive(Exclusive::take {
            name: "apple".into(),
            qty: 1,
        }),
        Call::Exclusive(Exclusive::set_all { qty: 1 }),
        Call::Exclusive(Exclusive::clear {}),
    ];
    assert_eq!(calls.len(), Shop::schema().len());
    for call in &calls {
        let (id, _) = encode_call(call);
        let name = Shop::method_name(call);
        let schema = Shop::schema().iter().find(|m| m.id == id).unwrap();
        assert_eq!(schema.wire_name, name);
        assert_eq!(id, MethodSchema::method_id("Shop", name));
    }
    // The wire name, not the Rust name.
    assert_eq!(
        encode_call(&Call::Exclusive(Exclusive::set_all { qty: 1 })).0,
        MethodSchema::method_id("Shop", "restock")
    );
}

#[test]
fn a_renamed_class_keeps_the_method_ids_of_its_former_name() {
    assert_eq!(Store::class_options().name, "Store");
    let (id, args) = encode_call(&Call::Shared(Shared::count {}));
    assert_eq!(id_of::<Store>("count"), id);
    // A call from a peer still running `Shop` decodes on `Store`...
    let call = Store::decode_call(id, &args).unwrap();
    assert_eq!(Store::method_name(&call), "count");
    // ... and one addressed to the new name does not exist.
    let err = Store::decode_call(MethodSchema::method_id("Store", "count"), &args)
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::UnknownMethod);
}

#[test]
fn an_unknown_method_id_is_an_unknown_method_error() {
    let other_class = id_of::<Counter>("increment");
    for id in [0, u64::MAX, 0xdead_beef, other_class] {
        let err = Shop::decode_call(id, &[]).err().unwrap();
        assert_eq!(err.kind(), ErrorKind::UnknownMethod, "{err}");
        assert!(err.to_string().contains("Shop"), "{err}");
        let err = Shop::decode_output(id, &[0]).err().unwrap();
        assert_eq!(err.kind(), ErrorKind::UnknownMethod, "{err}");
    }
}

fn assert_invalid<T>(what: &str, result: Result<T>) {
    match result {
        Ok(_) => panic!("{what}: decoded"),
        Err(e) => assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{what}: {e}"),
    }
}

#[test]
fn truncated_arguments_are_invalid() {
    let calls: Vec<ShopCall> = vec![
        Call::Shared(Shared::describe {
            item: apple(),
            qty: 300,
            note: Some("gift".into()),
        }),
        Call::Shared(Shared::find {
            names: vec!["apple".into()],
        }),
        Call::Exclusive(Exclusive::add {
            item: apple(),
            qty: 1,
        }),
        Call::Exclusive(Exclusive::take {
            name: "apple".into(),
            qty: 1,
        }),
        Call::Exclusive(Exclusive::set_all { qty: 1 }),
    ];
    for call in &calls {
        let (id, args) = encode_call(call);
        for len in 0..args.len() {
            let what = format!(
                "{} cut to {len} of {} bytes",
                Shop::method_name(call),
                args.len()
            );
            assert_invalid(&what, Shop::decode_call(id, &args[..len]));
        }
    }
}

#[test]
fn trailing_bytes_are_invalid() {
    let calls: Vec<ShopCall> = vec![
        Call::Shared(Shared::count {}),
        Call::Exclusive(Exclusive::add {
            item: apple(),
            qty: 1,
        }),
        Call::Exclusive(Exclusive::clear {}),
        Call::Exclusive(Exclusive::set_all { qty: 1 }),
    ];
    for call in &calls {
        let (id, mut args) = encode_call(call);
        args.push(0);
        let err = Shop::decode_call(id, &args).err().unwrap();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
        let wire_name = Shop::method_name(call);
        assert!(
            err.to_string().contains(&format!("Shop::{wire_name}")),
            "{err}"
        );
    }
}

#[test]
fn the_arguments_of_another_method_are_invalid() {
    // Postcard is not self-describing: these pairs are ones whose shapes differ.
    let describe = Call::Shared(Shared::describe {
        item: apple(),
        qty: 1,
        note: Some("gift".into()),
    });
    let add = Call::Exclusive(Exclusive::add {
        item: apple(),
        qty: 1,
    });
    let take = Call::Exclusive(Exclusive::take {
        name: "apple".into(),
        qty: 1,
    });
    let count = Call::Shared(Shared::count {});
    for (from, to) in [
        (&describe, "add"),
        (&describe, "restock"),
        (&add, "take"),
        (&add, "count"),
        (&take, "describe"),
        (&take, "clear"),
        (&count, "add"),
        (&count, "restock"),
    ] {
        let (_, args) = encode_call(from);
        let what = format!("{} as {to}", Shop::method_name(from));
        assert_invalid(&what, Shop::decode_call(id_of::<Shop>(to), &args));
    }
}

// ---------------------------------------------------------------------------------------------
// Outputs.

/// Encodes `output` (method `wire_name`'s, holding `value`), checks that the bytes are those
/// of the declared return type, decodes them, and checks that the decoded output is the same
/// method's, holding the same value.
fn output_round_trip<V>(wire_name: &str, output: Output, value: V, extract: fn(Output) -> Option<V>)
where
    V: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let bytes = encode_output(&output);
    assert_eq!(
        bytes,
        encoded(&value),
        "{wire_name}: the declared type, as is"
    );
    let decoded = Shop::decode_output(id_of::<Shop>(wire_name), &bytes)
        .unwrap_or_else(|e| panic!("{wire_name}: {e}"));
    assert_eq!(encode_output(&decoded), bytes, "{wire_name}: re-encoded");
    assert_eq!(extract(decoded), Some(value), "{wire_name}");
    // And never more than the value: a byte more, or one less, is an error.
    let mut longer = bytes.clone();
    longer.push(0);
    assert_invalid(
        wire_name,
        Shop::decode_output(id_of::<Shop>(wire_name), &longer),
    );
    for len in 0..bytes.len() {
        let what = format!("{wire_name} cut to {len}");
        assert_invalid(
            &what,
            Shop::decode_output(id_of::<Shop>(wire_name), &bytes[..len]),
        );
    }
}

#[test]
fn every_kind_of_output_round_trips() {
    fn count(o: Output) -> Option<Result<u64>> {
        match o {
            Output::count(v) => Some(v),
            _ => None,
        }
    }
    fn describe(o: Output) -> Option<String> {
        match o {
            Output::describe(v) => Some(v),
            _ => None,
        }
    }
    fn find(o: Output) -> Option<Option<Vec<String>>> {
        match o {
            Output::find(v) => Some(v),
            _ => None,
        }
    }
    fn add(o: Output) -> Option<Result<u32>> {
        match o {
            Output::add(v) => Some(v),
            _ => None,
        }
    }
    fn take(o: Output) -> Option<Result<Item, ShopError>> {
        match o {
            Output::take(v) => Some(v),
            _ => None,
        }
    }
    fn set_all(o: Output) -> Option<()> {
        match o {
            Output::set_all(v) => Some(v),
            _ => None,
        }
    }
    fn clear(o: Output) -> Option<()> {
        match o {
            Output::clear(v) => Some(v),
            _ => None,
        }
    }

    output_round_trip("count", Output::count(Ok(12)), Ok(12), count);
    let app = || Error::app("Closed", "the shop is closed");
    output_round_trip("count", Output::count(Err(app())), Err(app()), count);
    let text = "2 x apple".to_owned();
    output_round_trip("describe", Output::describe(text.clone()), text, describe);
    let found = Some(vec!["apple".to_owned(), String::new()]);
    output_round_trip("find", Output::find(found.clone()), found, find);
    output_round_trip("find", Output::find(None), None, find);
    output_round_trip("add", Output::add(Ok(u32::MAX)), Ok(u32::MAX), add);
    output_round_trip("add", Output::add(Err(app())), Err(app()), add);
    output_round_trip("take", Output::take(Ok(apple())), Ok(apple()), take);
    let short = || ShopError::OutOfStock {
        name: "pear".into(),
        left: 2,
    };
    output_round_trip("take", Output::take(Err(short())), Err(short()), take);
    let runtime = || ShopError::Runtime(app());
    output_round_trip("take", Output::take(Err(runtime())), Err(runtime()), take);
    output_round_trip("restock", Output::set_all(()), (), set_all);
    output_round_trip("clear", Output::clear(()), (), clear);
}

// ---------------------------------------------------------------------------------------------
// Garbage.

proptest! {
    /// Any bytes, under any of the class's method IDs or another: an error or a call, never a
    /// panic; and an error is one of the two kinds the codec reports.
    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64), pick in 0usize..9, other in any::<u64>()) {
        let schema = Shop::schema();
        let id = schema.get(pick).map_or(other, |m| m.id);
        let known = schema.iter().any(|m| m.id == id);
        let kinds = |e: Error| {
            let kind = e.kind();
            prop_assert!(
                kind == ErrorKind::InvalidArgument || (kind == ErrorKind::UnknownMethod && !known),
                "{e}"
            );
            Ok(())
        };
        // What decodes is a call of that method, which re-encodes and decodes again. (Not
        // always to the same bytes: postcard accepts overlong varints.)
        match Shop::decode_call(id, &bytes) {
            Ok(call) => {
                let (again, args) = encode_call(&call);
                prop_assert_eq!(again, id);
                let call = Shop::decode_call(id, &args).unwrap();
                prop_assert_eq!(encode_call(&call), (id, args));
            }
            Err(e) => kinds(e)?,
        }
        match Shop::decode_output(id, &bytes) {
            Ok(output) => {
                let again = encode_output(&output);
                let output = Shop::decode_output(id, &again).unwrap();
                prop_assert_eq!(encode_output(&output), again);
            }
            Err(e) => kinds(e)?,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Golden bytes: a change of encoding fails here, and must not ship to peers unannounced.

#[test]
fn the_encoding_of_counter_increment_is_pinned() {
    type CounterCall =
        Call<<Counter as DurableObject>::SharedCall, <Counter as DurableObject>::ExclusiveCall>;
    type CounterExclusive = <Counter as DurableObject>::ExclusiveCall;
    type CounterOutput = <Counter as DurableObject>::Output;

    let call: CounterCall = Call::Exclusive(CounterExclusive::increment { amount: 5 });
    let mut args = Vec::new();
    let id = Counter::encode_call(&call, &mut args).unwrap();
    // FNV-1a 64 of b"Counter\0increment".
    assert_eq!(id, 0x0c85_a089_0772_435a);
    // The tuple `(5i64,)`: one zigzag varint, 5 -> 10.
    assert_eq!(args, [0x0a]);
    match Counter::decode_call(id, &args).unwrap() {
        Call::Exclusive(CounterExclusive::increment { amount }) => assert_eq!(amount, 5),
        _ => panic!("not increment"),
    }

    // `Ok(6)` of `Result<i64>`: variant 0, then zigzag 6 -> 12.
    let mut out = Vec::new();
    Counter::encode_output(&CounterOutput::increment(Ok(6)), &mut out).unwrap();
    assert_eq!(out, [0x00, 0x0c]);
    match Counter::decode_output(id, &out).unwrap() {
        CounterOutput::increment(value) => assert_eq!(value.unwrap(), 6),
        _ => panic!("not increment"),
    }

    // An application error: variant 1, then the error (its `App` variant 0, kind, message).
    let mut out = Vec::new();
    let err = Error::app("Kind", "msg");
    Counter::encode_output(&CounterOutput::increment(Err(err.clone())), &mut out).unwrap();
    assert_eq!(
        out,
        [0x01, 0x00, 4, b'K', b'i', b'n', b'd', 3, b'm', b's', b'g']
    );
    match Counter::decode_output(id, &out).unwrap() {
        CounterOutput::increment(value) => assert_eq!(value.unwrap_err(), err),
        _ => panic!("not increment"),
    }
}

#[test]
fn arguments_are_a_tuple_in_declaration_order() {
    let (_, args) = encode_call(&Call::Exclusive(Exclusive::take {
        name: "ab".into(),
        qty: 2,
    }));
    // `("ab", 2u32)`: the string's length and bytes, then the varint.
    assert_eq!(args, [2, b'a', b'b', 2]);
    let (_, args) = encode_call(&Call::Exclusive(Exclusive::clear {}));
    assert_eq!(args, [0u8; 0], "no arguments: `()`, no bytes");
    // And a unit return encodes to nothing.
    assert_eq!(encode_output(&Output::clear(())), [0u8; 0]);
}
