//! Bad input and the error model: invalid IDs, storage limits, batch limits, application
//! errors, typed user errors, panics, duplicate class names, overload.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use durable_runtime::{
    durable_object, Context, Error, ErrorKind, ListOptions, Result, Runtime, MAX_BATCH_KEYS,
    MAX_KEY_BYTES, MAX_VALUE_BYTES,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

/// Turns a hang into a test failure.
const HANG: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Two classes, for IDs.

#[durable_object]
pub struct Alpha {
    ctx: Context,
}

#[durable_object]
impl Alpha {
    pub fn new(ctx: Context) -> Self {
        Alpha { ctx }
    }

    pub async fn ping(&self) -> Result<String> {
        Ok(self.ctx.id().to_string())
    }
}

#[durable_object]
pub struct Beta {
    ctx: Context,
}

#[durable_object]
impl Beta {
    pub fn new(ctx: Context) -> Self {
        Beta { ctx }
    }

    pub async fn ping(&self) -> Result<String> {
        Ok(self.ctx.id().to_string())
    }
}

#[tokio::test]
async fn another_classes_id_is_refused() {
    let rt = Runtime::in_memory();
    let alphas = rt.namespace::<Alpha>();
    let betas = rt.namespace::<Beta>();
    for alpha_id in [alphas.id_from_name("x"), alphas.new_unique_id()] {
        let text = alpha_id.to_string();
        // Positive control: the right class parses it back.
        assert_eq!(alphas.id_from_string(&text).unwrap(), alpha_id);

        let err = betas.id_from_string(&text).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidId, "{err}");
        assert!(!err.is_remote());
        assert!(
            err.to_string().contains("Beta"),
            "the message should name the class: {err}"
        );

        // A stub made from another class's ID refuses every call.
        let err = betas.get(alpha_id.clone()).ping().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidId, "{err}");
        assert!(!err.is_remote());
        assert!(err.to_string().contains("Beta"), "{err}");
    }
    // The namespaces still serve their own objects.
    let id = alphas.id_from_name("x");
    assert_eq!(alphas.get(id.clone()).ping().await.unwrap(), id.to_string());
    let id = betas.id_from_name("x");
    assert_eq!(betas.get(id.clone()).ping().await.unwrap(), id.to_string());
}

#[tokio::test]
async fn malformed_id_strings_are_refused() {
    let rt = Runtime::in_memory();
    let alphas = rt.namespace::<Alpha>();
    let good = alphas.id_from_name("x").to_string();
    let mut changed_kind = good.clone();
    // Byte 8 says how the ID was made; 0x07 is neither "named" nor "unique".
    changed_kind.replace_range(16..18, "07");
    let bad = [
        String::new(),
        "abc".to_owned(),
        good[..63].to_owned(),
        format!("{good}0"),
        format!("{good}{good}"),
        format!(" {}", &good[1..]),
        format!("{}g", &good[..63]),
        "z".repeat(64),
        "0x".to_owned() + &good[2..],
        // 64 bytes, but 32 two-byte characters.
        "é".repeat(32),
        "0".repeat(64),
        changed_kind,
    ];
    for text in &bad {
        let err = alphas.id_from_string(text).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidId, "{text:?}: {err}");
        assert!(!err.is_remote());
        assert!(!err.is_retryable());
    }
    assert!(alphas.id_from_string(&good).is_ok());
}

// ---------------------------------------------------------------------------------------------
// Storage limits and batch limits.

#[durable_object]
pub struct Store {
    ctx: Context,
}

#[durable_object]
impl Store {
    pub fn new(ctx: Context) -> Self {
        Store { ctx }
    }

    pub async fn put(&mut self, key: String, value: i64) -> Result<()> {
        self.ctx.storage_mut().put(&key, &value)
    }

    pub async fn get(&self, key: String) -> Result<Option<i64>> {
        self.ctx.storage().get(&key)
    }

    /// Stores `len` bytes under `key`.
    pub async fn put_bytes(&mut self, key: String, len: usize) -> Result<()> {
        self.ctx.storage_mut().put(&key, &vec![7u8; len])
    }

    /// The length of the bytes stored under `key`.
    pub async fn bytes_len(&self, key: String) -> Result<Option<usize>> {
        Ok(self.ctx.storage().get::<Vec<u8>>(&key)?.map(|v| v.len()))
    }

    pub async fn put_many(&mut self, entries: Vec<(String, i64)>) -> Result<()> {
        self.ctx.storage_mut().put_many(entries)
    }

    /// `put_many` whose last value is `len` bytes.
    pub async fn put_many_with_big_last(&mut self, keys: Vec<String>, len: usize) -> Result<()> {
        let n = keys.len();
        let entries = keys.into_iter().enumerate().map(|(i, k)| {
            let value = if i + 1 == n {
                vec![1u8; len]
            } else {
                vec![1u8]
            };
            (k, value)
        });
        self.ctx.storage_mut().put_many(entries)
    }

    pub async fn get_many(&self, keys: Vec<String>) -> Result<usize> {
        Ok(self.ctx.storage().get_many::<_, i64>(keys)?.len())
    }

    pub async fn delete_many(&mut self, keys: Vec<String>) -> Result<usize> {
        self.ctx.storage_mut().delete_many(keys)
    }

    pub async fn delete(&mut self, key: String) -> Result<bool> {
        self.ctx.storage_mut().delete(&key)
    }

    /// Every entry holding an `i64`-sized value, under the prefix `p:`.
    pub async fn all(&self) -> Result<Vec<(String, i64)>> {
        self.ctx.storage().list(ListOptions::default().prefix("p:"))
    }

    pub async fn list_with(
        &self,
        start: Option<String>,
        start_after: Option<String>,
        end: Option<String>,
        prefix: Option<String>,
    ) -> Result<Vec<(String, i64)>> {
        let mut options = ListOptions::default();
        if let Some(s) = &start {
            options = options.start(s);
        }
        if let Some(s) = &start_after {
            options = options.start_after(s);
        }
        if let Some(s) = &end {
            options = options.end(s);
        }
        if let Some(s) = &prefix {
            options = options.prefix(s);
        }
        self.ctx.storage().list(options)
    }

    /// The first `limit` entries under `p:`.
    pub async fn first(&self, limit: usize) -> Result<Vec<(String, i64)>> {
        self.ctx
            .storage()
            .list(ListOptions::default().prefix("p:").limit(limit))
    }
}

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("p:{i:03}")).collect()
}

#[tokio::test]
async fn too_large_keys_and_values_are_refused_and_lose_nothing() {
    let rt = Runtime::in_memory();
    let store = rt.namespace::<Store>().get_by_name("limits");
    store.put("p:a".into(), 1).await.unwrap();
    store.put("p:b".into(), 2).await.unwrap();
    let before = store.all().await.unwrap();
    assert_eq!(before, vec![("p:a".to_owned(), 1), ("p:b".to_owned(), 2)]);

    // The longest key is fine; one byte more is refused, for every operation.
    let longest = format!("p:{}", "k".repeat(MAX_KEY_BYTES - 2));
    assert_eq!(longest.len(), MAX_KEY_BYTES);
    store.put(longest.clone(), 3).await.unwrap();
    assert_eq!(store.get(longest.clone()).await.unwrap(), Some(3));
    assert!(store.delete(longest.clone()).await.unwrap());

    let too_long = format!("{longest}k");
    let err = store.put(too_long.clone(), 4).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::KeyTooLarge, "{err}");
    assert!(!err.is_remote() && !err.is_retryable());
    assert!(
        err.to_string().contains(&MAX_KEY_BYTES.to_string()),
        "{err}"
    );
    // Multi-byte characters count in bytes, not characters.
    let wide = format!("p:{}", "é".repeat(MAX_KEY_BYTES / 2));
    assert!(wide.chars().count() < MAX_KEY_BYTES && wide.len() > MAX_KEY_BYTES);
    let err = store.put(wide, 4).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::KeyTooLarge, "{err}");
    for err in [
        store.get(too_long.clone()).await.unwrap_err(),
        store.delete(too_long.clone()).await.unwrap_err(),
        store
            .put_many(vec![("p:c".into(), 5), (too_long.clone(), 6)])
            .await
            .unwrap_err(),
        store
            .delete_many(vec!["p:a".into(), too_long.clone()])
            .await
            .unwrap_err(),
        store.get_many(vec![too_long.clone()]).await.unwrap_err(),
        store
            .list_with(None, None, None, Some(too_long.clone()))
            .await
            .unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::KeyTooLarge, "{err}");
    }

    // Values: postcard encodes `len` bytes as a 3-byte length and the bytes, so
    // MAX_VALUE_BYTES - 3 bytes is exactly the limit and one more is over it.
    let fits = MAX_VALUE_BYTES - 3;
    store.put_bytes("big:fits".into(), fits).await.unwrap();
    assert_eq!(
        store.bytes_len("big:fits".into()).await.unwrap(),
        Some(fits)
    );
    let err = store
        .put_bytes("big:over".into(), fits + 1)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ValueTooLarge, "{err}");
    assert!(!err.is_remote() && !err.is_retryable());
    assert!(err.to_string().contains("big:over"), "{err}");
    assert_eq!(store.bytes_len("big:over".into()).await.unwrap(), None);
    // The refused value did not replace an existing one either.
    let err = store
        .put_bytes("big:fits".into(), MAX_VALUE_BYTES * 2)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ValueTooLarge, "{err}");
    assert_eq!(
        store.bytes_len("big:fits".into()).await.unwrap(),
        Some(fits)
    );
    // put_many with one value too large stores none of its entries.
    let err = store
        .put_many_with_big_last(vec!["p:x".into(), "p:y".into()], MAX_VALUE_BYTES)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ValueTooLarge, "{err}");

    // Nothing was lost, nothing half-written.
    assert_eq!(store.all().await.unwrap(), before);
    assert_eq!(store.get("p:c".into()).await.unwrap(), None);
    // And the object keeps working.
    store.put("p:c".into(), 7).await.unwrap();
    assert_eq!(store.get("p:a".into()).await.unwrap(), Some(1));
    assert_eq!(store.get("p:c".into()).await.unwrap(), Some(7));
}

#[tokio::test]
async fn batches_over_128_keys_and_start_with_start_after_are_invalid_arguments() {
    assert_eq!(MAX_BATCH_KEYS, 128);
    let rt = Runtime::in_memory();
    let store = rt.namespace::<Store>().get_by_name("batches");

    // 128 keys: fine.
    let entries: Vec<(String, i64)> = keys(128).into_iter().zip(0..).collect();
    store.put_many(entries).await.unwrap();
    assert_eq!(store.get_many(keys(128)).await.unwrap(), 128);

    // 129 keys: refused, and nothing happens.
    let entries: Vec<(String, i64)> = keys(129).into_iter().zip(1000..).collect();
    let err = store.put_many(entries).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(!err.is_remote());
    assert_eq!(store.get("p:128".into()).await.unwrap(), None);
    assert_eq!(store.get("p:000".into()).await.unwrap(), Some(0));

    let err = store.get_many(keys(129)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");

    let err = store.delete_many(keys(129)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert_eq!(store.all().await.unwrap().len(), 128);

    assert_eq!(store.delete_many(keys(128)).await.unwrap(), 128);
    assert!(store.all().await.unwrap().is_empty());

    // list: a zero limit is an error (Cloudflare's "List limit must be positive"), not an
    // empty page.
    store.put("p:a".into(), 1).await.unwrap();
    let err = store.first(0).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(
        err.to_string().contains("List limit must be positive"),
        "{err}"
    );
    assert_eq!(store.first(1).await.unwrap(), [("p:a".to_owned(), 1)]);

    // list: start with start_after is an error, whatever the other options.
    store.put("p:a".into(), 1).await.unwrap();
    for (end, prefix) in [
        (None, None),
        (Some("p:z".to_owned()), None),
        (None, Some("p:".to_owned())),
    ] {
        let err = store
            .list_with(Some("p:".into()), Some("p:".into()), end, prefix)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
        assert!(!err.is_remote());
    }
    // Each alone is fine.
    assert_eq!(
        store
            .list_with(Some("p:".into()), None, None, None)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store
            .list_with(None, Some("p:".into()), None, None)
            .await
            .unwrap()
            .len(),
        1
    );
}

// ---------------------------------------------------------------------------------------------
// Application errors and typed user errors.

/// A user's own error type: crosses the stub as it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum BankError {
    Insufficient { have: i64, want: i64 },
    Frozen(String),
    Runtime(Error),
}

impl From<Error> for BankError {
    fn from(err: Error) -> Self {
        BankError::Runtime(err)
    }
}

#[durable_object]
pub struct Account {
    ctx: Context,
}

#[durable_object]
impl Account {
    pub fn new(ctx: Context) -> Self {
        Account { ctx }
    }

    pub async fn find(&self, user: String) -> Result<String> {
        Err(Error::app("NotFound", format!("no such user: {user}")))
    }

    pub async fn parse(&self, text: String) -> Result<i64> {
        Ok(text.parse::<i64>()?)
    }

    pub async fn deposit(&mut self, amount: i64) -> Result<i64, BankError> {
        let balance = self.ctx.storage().get::<i64>("balance")?.unwrap_or(0) + amount;
        self.ctx.storage_mut().put("balance", &balance)?;
        Ok(balance)
    }

    pub async fn withdraw(&mut self, amount: i64) -> Result<i64, BankError> {
        if self.ctx.storage().get::<bool>("frozen")?.unwrap_or(false) {
            return Err(BankError::Frozen("by order of the bank".into()));
        }
        let have = self.ctx.storage().get::<i64>("balance")?.unwrap_or(0);
        if have < amount {
            return Err(BankError::Insufficient { have, want: amount });
        }
        self.ctx.storage_mut().put("balance", &(have - amount))?;
        Ok(have - amount)
    }

    pub async fn freeze(&mut self) -> Result<(), BankError> {
        self.ctx.storage_mut().put("frozen", &true)?;
        Ok(())
    }

    /// Panics: the caller still gets a `BankError`.
    pub async fn explode(&mut self) -> Result<(), BankError> {
        panic!("account exploded")
    }

    /// Fails inside the method with a runtime error, converted by `?` to `BankError`.
    pub async fn bad_key(&mut self) -> Result<(), BankError> {
        self.ctx
            .storage_mut()
            .put(&"k".repeat(MAX_KEY_BYTES + 1), &1)?;
        Ok(())
    }
}

#[tokio::test]
async fn app_errors_keep_their_kind_and_message() {
    let rt = Runtime::in_memory();
    let account = rt.namespace::<Account>().get_by_name("a");

    let err = account.find("bob".into()).await.unwrap_err();
    assert!(err.is_remote());
    assert!(!err.is_overloaded() && !err.is_retryable());
    assert_eq!(err.kind(), ErrorKind::App);
    assert_eq!(err.app_kind(), Some("NotFound"));
    assert_eq!(err.message(), "no such user: bob");
    assert_eq!(err, Error::app("NotFound", "no such user: bob"));

    let err = account.parse("12x".into()).await.unwrap_err();
    assert!(err.is_remote());
    assert_eq!(err.kind(), ErrorKind::App);
    assert_eq!(err.app_kind(), Some("ParseIntError"));
    assert_eq!(err.message(), "12x".parse::<i64>().unwrap_err().to_string());
    assert_eq!(account.parse("-12".into()).await.unwrap(), -12);
}

#[tokio::test]
async fn typed_user_errors_cross_intact() {
    let rt = Runtime::in_memory();
    let accounts = rt.namespace::<Account>();
    let account = accounts.get_by_name("a");

    assert_eq!(account.deposit(10).await, Ok(10));
    assert_eq!(
        account.withdraw(25).await,
        Err(BankError::Insufficient { have: 10, want: 25 })
    );
    assert_eq!(account.withdraw(4).await, Ok(6));
    account.freeze().await.unwrap();
    assert_eq!(
        account.withdraw(1).await,
        Err(BankError::Frozen("by order of the bank".into()))
    );

    // A runtime error inside the method, converted with `?`.
    match account.bad_key().await {
        Err(BankError::Runtime(e)) => assert_eq!(e.kind(), ErrorKind::KeyTooLarge, "{e}"),
        other => panic!("expected BankError::Runtime(KeyTooLarge), got {other:?}"),
    }
    // A panic becomes `E` too, and the committed balance is intact.
    match account.explode().await {
        Err(BankError::Runtime(e)) => {
            assert_eq!(e.kind(), ErrorKind::Panicked, "{e}");
            assert!(e.is_remote());
        }
        other => panic!("expected BankError::Runtime(Panicked), got {other:?}"),
    }
    assert_eq!(account.deposit(0).await, Ok(6));
    // A runtime error raised by the stub itself (another class's ID) becomes `E` too.
    let alien = rt.namespace::<Alpha>().id_from_name("a");
    match accounts.get(alien).deposit(1).await {
        Err(BankError::Runtime(e)) => assert_eq!(e.kind(), ErrorKind::InvalidId, "{e}"),
        other => panic!("expected BankError::Runtime(InvalidId), got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Panics.

#[durable_object]
pub struct Fragile {
    ctx: Context,
    /// Calls since this instance was activated.
    calls: u32,
}

#[durable_object]
impl Fragile {
    pub fn new(ctx: Context) -> Self {
        Fragile { ctx, calls: 0 }
    }

    /// Counts the call in memory and in storage; returns the in-memory count.
    pub async fn bump(&mut self) -> Result<u32> {
        self.calls += 1;
        let stored = self.ctx.storage().get::<u32>("bumps")?.unwrap_or(0) + 1;
        self.ctx.storage_mut().put("bumps", &stored)?;
        Ok(self.calls)
    }

    pub async fn calls(&self) -> Result<u32> {
        Ok(self.calls)
    }

    pub async fn get(&self, key: String) -> Result<Option<u32>> {
        self.ctx.storage().get(&key)
    }

    pub async fn put_then_panic(&mut self, key: String) -> Result<()> {
        self.calls += 1;
        self.ctx.storage_mut().put(&key, &99u32)?;
        self.ctx.storage_mut().put("bumps", &1000u32)?;
        tokio::task::yield_now().await;
        panic!("boom in put_then_panic");
    }

    pub async fn panic_shared(&self) -> Result<()> {
        panic!("boom in panic_shared");
    }
}

#[tokio::test]
async fn a_panic_discards_the_calls_writes_and_resets_the_object() {
    let rt = Runtime::in_memory();
    let fragiles = rt.namespace::<Fragile>();
    let f = fragiles.get_by_name("f");
    let other = fragiles.get_by_name("other");
    assert_eq!(f.bump().await.unwrap(), 1);
    assert_eq!(f.bump().await.unwrap(), 2);
    assert_eq!(other.bump().await.unwrap(), 1);

    let err = f.put_then_panic("lost".into()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Panicked, "{err}");
    assert!(err.is_remote());
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("boom in put_then_panic"), "{err}");
    assert!(err.to_string().contains("put_then_panic"), "{err}");

    // The call's writes are gone, the earlier ones are intact.
    assert_eq!(f.get("lost".into()).await.unwrap(), None);
    assert_eq!(f.get("bumps".into()).await.unwrap(), Some(2));
    // The instance was re-created by `new`: its in-memory count restarted.
    assert_eq!(f.calls().await.unwrap(), 0);
    assert_eq!(f.bump().await.unwrap(), 1);
    assert_eq!(f.get("bumps".into()).await.unwrap(), Some(3));

    // A panic in a shared call resets the object too.
    let err = f.panic_shared().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Panicked, "{err}");
    assert!(err.is_remote());
    assert_eq!(f.calls().await.unwrap(), 0);
    assert_eq!(f.get("bumps".into()).await.unwrap(), Some(3));

    // Other objects and the runtime keep serving; the other object was not reset.
    assert_eq!(other.bump().await.unwrap(), 2);
    assert_eq!(other.get("bumps".into()).await.unwrap(), Some(2));
    let fresh = fragiles.get_by_name("fresh");
    assert_eq!(fresh.bump().await.unwrap(), 1);
    assert_eq!(
        rt.namespace::<Store>()
            .get_by_name("s")
            .get("p:a".into())
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn a_panic_on_fjall_discards_the_calls_writes() {
    let dir = tempfile::tempdir().unwrap();
    let rt = Runtime::builder().data_dir(dir.path()).open().unwrap();
    let f = rt.namespace::<Fragile>().get_by_name("f");
    assert_eq!(f.bump().await.unwrap(), 1);
    let err = f.put_then_panic("lost".into()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Panicked, "{err}");
    rt.shutdown().await.unwrap();

    let rt = Runtime::builder().data_dir(dir.path()).open().unwrap();
    let f = rt.namespace::<Fragile>().get_by_name("f");
    assert_eq!(f.get("lost".into()).await.unwrap(), None);
    assert_eq!(f.get("bumps".into()).await.unwrap(), Some(1));
    rt.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Two classes with one name.

#[durable_object(name = "Same")]
pub struct SameA {
    ctx: Context,
}

#[durable_object]
impl SameA {
    pub fn new(ctx: Context) -> Self {
        SameA { ctx }
    }

    pub async fn which(&self) -> Result<String> {
        Ok(format!("A {}", self.ctx.id()))
    }
}

#[durable_object(name = "Same")]
pub struct SameB {
    ctx: Context,
}

#[durable_object]
impl SameB {
    pub fn new(ctx: Context) -> Self {
        SameB { ctx }
    }

    pub async fn which(&self) -> Result<String> {
        Ok(format!("B {}", self.ctx.id()))
    }
}

#[tokio::test]
async fn two_classes_with_one_name_are_refused() {
    let rt = Runtime::in_memory();
    let a = rt.try_namespace::<SameA>().unwrap();
    assert_eq!(a.class_name(), "Same");
    let err = rt.try_namespace::<SameB>().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("Same"), "{err}");
    // Asking again gives the same answer, and the first class keeps working.
    assert_eq!(
        rt.try_namespace::<SameB>().unwrap_err().kind(),
        ErrorKind::Config
    );
    assert!(rt.try_namespace::<SameA>().is_ok());
    assert!(a.get_by_name("x").which().await.unwrap().starts_with("A "));

    // In another runtime, the other one may take the name.
    let rt2 = Runtime::in_memory();
    let b = rt2.try_namespace::<SameB>().unwrap();
    assert!(b.get_by_name("x").which().await.unwrap().starts_with("B "));
    assert_eq!(
        rt2.try_namespace::<SameA>().unwrap_err().kind(),
        ErrorKind::Config
    );
}

// A class renamed from another one's name: both would own the same IDs and data.

#[durable_object(name = "Points", renamed_from = "Score")]
pub struct Points {
    ctx: Context,
}

#[durable_object]
impl Points {
    pub fn new(ctx: Context) -> Self {
        Points { ctx }
    }

    pub async fn id(&self) -> Result<String> {
        Ok(self.ctx.id().to_string())
    }
}

#[durable_object(name = "Score")]
pub struct Score {
    ctx: Context,
}

#[durable_object]
impl Score {
    pub fn new(ctx: Context) -> Self {
        Score { ctx }
    }

    pub async fn id(&self) -> Result<String> {
        Ok(self.ctx.id().to_string())
    }
}

#[tokio::test]
async fn a_class_renamed_from_a_live_classs_name_is_refused() {
    let rt = Runtime::in_memory();
    let score = rt.try_namespace::<Score>().unwrap();
    let err = rt.try_namespace::<Points>().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("share their IDs"), "{err}");
    // The renamed class alone owns the old IDs.
    let rt2 = Runtime::in_memory();
    let points = rt2.try_namespace::<Points>().unwrap();
    assert_eq!(points.id_from_name("x"), score.id_from_name("x"));
    assert_eq!(
        rt2.try_namespace::<Score>().unwrap_err().kind(),
        ErrorKind::Config
    );
}

// ---------------------------------------------------------------------------------------------
// Overload.

#[durable_object(max_queue = 4)]
pub struct Narrow {
    ctx: Context,
}

#[durable_object]
impl Narrow {
    pub fn new(ctx: Context) -> Self {
        Narrow { ctx }
    }

    /// Waits for one permit of the env's semaphore, then counts itself in storage.
    pub async fn wait(&mut self) -> Result<u32> {
        let gate = self
            .ctx
            .env::<Arc<Semaphore>>()
            .cloned()
            .ok_or_else(|| Error::app("NoEnv", "no semaphore"))?;
        gate.acquire().await?.forget();
        let done = self.ctx.storage().get::<u32>("done")?.unwrap_or(0) + 1;
        self.ctx.storage_mut().put("done", &done)?;
        Ok(done)
    }

    pub async fn done(&self) -> Result<u32> {
        Ok(self.ctx.storage().get("done")?.unwrap_or(0))
    }

    /// A shared call that waits for one permit of the env's semaphore.
    pub async fn wait_shared(&self) -> Result<u32> {
        let gate = self
            .ctx
            .env::<Arc<Semaphore>>()
            .cloned()
            .ok_or_else(|| Error::app("NoEnv", "no semaphore"))?;
        gate.acquire().await?.forget();
        Ok(1)
    }
}

type Pending = Pin<Box<dyn Future<Output = Result<u32>> + Send>>;

/// Polls `fut` once: `Some(output)` if it finished at once.
async fn poll_once(fut: &mut Pending) -> Option<Result<u32>> {
    std::future::poll_fn(|cx| {
        Poll::Ready(match fut.as_mut().poll(cx) {
            Poll::Ready(out) => Some(out),
            Poll::Pending => None,
        })
    })
    .await
}

#[tokio::test]
async fn a_full_queue_fails_fast_as_overloaded() {
    const CALLS: usize = 20;
    const MAX_QUEUE: usize = 4;
    let gate = Arc::new(Semaphore::new(0));
    let rt = Runtime::builder()
        .in_memory()
        .env(gate.clone())
        .open()
        .unwrap();
    let narrow = rt.namespace::<Narrow>().get_by_name("n");

    // Fire every call without waiting for any: each is sent when first polled.
    let mut overloaded = 0;
    let mut pending: Vec<Pending> = Vec::new();
    for _ in 0..CALLS {
        let stub = narrow.clone();
        let mut call: Pending = Box::pin(async move { stub.wait().await });
        match poll_once(&mut call).await {
            Some(Err(e)) if e.is_overloaded() => {
                assert!(!e.is_remote() && !e.is_retryable(), "{e}");
                assert_eq!(e.kind(), ErrorKind::Overloaded);
                overloaded += 1;
            }
            Some(other) => panic!("a call finished before it was released: {other:?}"),
            None => pending.push(call),
        }
    }
    // While blocked, more calls keep failing fast (no hang).
    let err = tokio::time::timeout(HANG, narrow.wait())
        .await
        .expect("a call to a full object hung instead of failing")
        .unwrap_err();
    assert!(err.is_overloaded(), "{err}");

    // Release them all: every admitted call completes.
    gate.add_permits(CALLS);
    let mut succeeded = 0;
    let mut results = Vec::new();
    for call in pending {
        let result = tokio::time::timeout(HANG, call)
            .await
            .expect("an admitted call hung after the release");
        results.push(result.expect("an admitted call failed"));
        succeeded += 1;
    }
    assert_eq!(succeeded + overloaded, CALLS);
    assert!(
        overloaded >= CALLS - (MAX_QUEUE + 1),
        "only {overloaded} of {CALLS} calls were refused with a queue of {MAX_QUEUE}"
    );
    assert!(succeeded >= 1);
    // The admitted calls ran in order, once each.
    assert_eq!(results, (1..=succeeded as u32).collect::<Vec<_>>());
    assert_eq!(narrow.done().await.unwrap(), succeeded as u32);
    // Once drained, the object takes calls again.
    assert_eq!(
        tokio::time::timeout(HANG, narrow.wait())
            .await
            .unwrap()
            .unwrap(),
        succeeded as u32 + 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawned_calls_to_a_full_queue_fail_fast_and_none_hangs() {
    const CALLS: usize = 20;
    const MAX_QUEUE: usize = 4;
    let gate = Arc::new(Semaphore::new(0));
    let rt = Runtime::builder()
        .in_memory()
        .env(gate.clone())
        .open()
        .unwrap();
    let narrow = rt.namespace::<Narrow>().get_by_name("n");
    let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CALLS {
        let stub = narrow.clone();
        let refused = refused.clone();
        tasks.push(tokio::spawn(async move {
            let result = stub.wait().await;
            if matches!(&result, Err(e) if e.is_overloaded()) {
                refused.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            result
        }));
    }
    // At most MAX_QUEUE calls wait in the queue and one runs (blocked): the others must
    // be refused while the object is blocked. If they are not, this times out.
    tokio::time::timeout(HANG, async {
        while refused.load(std::sync::atomic::Ordering::SeqCst) < CALLS - (MAX_QUEUE + 1) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("calls to a blocked object with a full queue were not refused");

    gate.add_permits(CALLS);
    let (mut succeeded, mut overloaded) = (0, 0);
    for task in tasks {
        match tokio::time::timeout(HANG, task)
            .await
            .expect("a call hung after the release")
            .expect("task panicked")
        {
            Ok(_) => succeeded += 1,
            Err(e) if e.is_overloaded() => overloaded += 1,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(succeeded + overloaded, CALLS);
    assert!(overloaded >= CALLS - (MAX_QUEUE + 1), "{overloaded}");
    assert_eq!(narrow.done().await.unwrap(), succeeded as u32);
}

/// Shared calls run concurrently, but not without bound: at most `max_queue` run at once
/// and at most `max_queue` wait, so slow shared calls cannot admit unbounded work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_shared_calls_are_bounded_too() {
    const CALLS: usize = 200;
    const MAX_QUEUE: usize = 4;
    let gate = Arc::new(Semaphore::new(0));
    let rt = Runtime::builder()
        .in_memory()
        .env(gate.clone())
        .open()
        .unwrap();
    let narrow = rt.namespace::<Narrow>().get_by_name("shared");
    let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CALLS {
        let stub = narrow.clone();
        let refused = refused.clone();
        tasks.push(tokio::spawn(async move {
            let result = stub.wait_shared().await;
            if matches!(&result, Err(e) if e.is_overloaded()) {
                refused.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            result
        }));
    }
    // At most MAX_QUEUE run (blocked) and MAX_QUEUE wait; one more may be between the two.
    let admitted_at_most = 2 * MAX_QUEUE + 1;
    tokio::time::timeout(HANG, async {
        while refused.load(std::sync::atomic::Ordering::SeqCst) < CALLS - admitted_at_most {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("blocked shared calls admitted unbounded work");

    gate.add_permits(CALLS);
    let (mut succeeded, mut overloaded) = (0, 0);
    for task in tasks {
        match tokio::time::timeout(HANG, task)
            .await
            .expect("a call hung after the release")
            .expect("task panicked")
        {
            Ok(_) => succeeded += 1,
            Err(e) if e.is_overloaded() => overloaded += 1,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(succeeded + overloaded, CALLS);
    assert!(
        succeeded <= admitted_at_most,
        "{succeeded} shared calls admitted"
    );
    assert!(succeeded >= 1);
}

// ---------------------------------------------------------------------------------------------
// A panic while activating.

#[durable_object]
pub struct Moody {
    ctx: Context,
}

#[durable_object]
impl Moody {
    pub fn new(ctx: Context) -> Self {
        let fail = ctx
            .env::<Arc<std::sync::atomic::AtomicBool>>()
            .is_some_and(|f| f.load(std::sync::atomic::Ordering::SeqCst));
        if fail {
            panic!("cannot start today");
        }
        Moody { ctx }
    }

    pub async fn hello(&self) -> Result<String> {
        Ok(format!("hello from {}", self.ctx.id()))
    }
}

#[tokio::test]
async fn a_panic_in_new_fails_the_call_and_the_next_call_activates_again() {
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let rt = Runtime::builder()
        .in_memory()
        .env(fail.clone())
        .open()
        .unwrap();
    let moody = rt.namespace::<Moody>().get_by_name("m");
    for _ in 0..2 {
        let err = tokio::time::timeout(HANG, moody.hello())
            .await
            .expect("a call to an object whose `new` panics hung")
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Panicked, "{err}");
        assert!(err.is_remote());
        assert!(err.to_string().contains("cannot start today"), "{err}");
    }
    fail.store(false, std::sync::atomic::Ordering::SeqCst);
    let hello = tokio::time::timeout(HANG, moody.hello())
        .await
        .expect("hung")
        .unwrap();
    assert!(hello.starts_with("hello from "), "{hello}");
}
