//! Moving a runtime's data between backends with `migrate::copy`, checked with
//! `migrate::verify`: a real runtime's objects (data, alarms, names) survive fjall → memory →
//! fjall and fjall → PostgreSQL (a private server, [`PgServer`]) → fjall, and read the same
//! through their stubs; a destination holding data is refused and left
//! as it was; `verify` names the first key that differs.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use durable_runtime::migrate::{self, Report};
use durable_runtime::{
    durable_object, AlarmInfo, Backend, Context, Entry, Error, ErrorKind, FjallBackend,
    ListOptions, MemoryBackend, PostgresBackend, Result, Runtime, Write,
};
use durable_tests::postgres::PgServer;
use durable_tests::{within, GENEROUS};

/// Which runtime an alarm fired in.
struct Label(&'static str);

/// Byte values under string keys, an alarm and schedules, and the name it was reached by.
#[durable_object]
pub struct Vault {
    ctx: Context,
}

#[durable_object]
impl Vault {
    pub fn new(ctx: Context) -> Self {
        Vault { ctx }
    }

    pub async fn put_all(&mut self, entries: Vec<(String, Vec<u8>)>) -> Result<()> {
        for (key, value) in entries {
            self.ctx.storage_mut().put(&key, &value)?;
        }
        Ok(())
    }

    pub async fn get(&self, key: String) -> Result<Option<Vec<u8>>> {
        self.ctx.storage().get(&key)
    }

    pub async fn list(&self) -> Result<Vec<(String, Vec<u8>)>> {
        self.ctx.storage().list(ListOptions::default())
    }

    pub async fn set_alarm(&mut self, at: SystemTime) -> Result<()> {
        self.ctx.storage_mut().set_alarm(at)
    }

    pub async fn set_schedule(&mut self, name: String, at: SystemTime) -> Result<()> {
        self.ctx.storage_mut().set_schedule(&name, at)
    }

    pub async fn alarm_at(&self) -> Result<Option<SystemTime>> {
        self.ctx.storage().get_alarm()
    }

    pub async fn schedules(&self) -> Result<Vec<(String, SystemTime)>> {
        self.ctx.storage().schedules()
    }

    /// The name the object was first reached by, as the runtime knows it.
    pub async fn name(&self) -> Result<Option<String>> {
        Ok(self.ctx.id().name().map(str::to_owned))
    }

    /// "schedule@runtime;" for every alarm or schedule that fired, stored as bytes like
    /// the rest of the data.
    pub async fn fired(&self) -> Result<String> {
        let fired: Vec<u8> = self.ctx.storage().get("fired")?.unwrap_or_default();
        Ok(String::from_utf8(fired)?)
    }

    pub async fn alarm(&mut self, info: AlarmInfo) -> Result<()> {
        let label = self
            .ctx
            .env::<Label>()
            .ok_or_else(|| Error::app("NoLabel", "the test labels its runtimes"))?
            .0;
        let mut fired: Vec<u8> = self.ctx.storage().get("fired")?.unwrap_or_default();
        let schedule = info.schedule.unwrap_or_default();
        fired.extend_from_slice(format!("{schedule}@{label};").as_bytes());
        self.ctx.storage_mut().put("fired", &fired)
    }
}

fn runtime(dir: &std::path::Path, label: &'static str) -> Runtime {
    Runtime::builder()
        .data_dir(dir)
        .env(Label(label))
        .register::<Vault>()
        .open()
        .unwrap_or_else(|e| panic!("open {}: {e}", dir.display()))
}

fn fjall(dir: &std::path::Path) -> FjallBackend {
    FjallBackend::open(dir).unwrap_or_else(|e| panic!("open {}: {e}", dir.display()))
}

/// Every entry of a backend, in order.
fn entries(backend: &dyn Backend) -> Vec<Entry> {
    backend
        .scan(Bound::Unbounded, Bound::Unbounded, false)
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Many keys, multi-byte UTF-8 ones among them, and five values of about 100 kB.
fn alice_data() -> BTreeMap<String, Vec<u8>> {
    let mut data = BTreeMap::new();
    for i in 0..150u32 {
        data.insert(format!("key {i:03}"), i.to_le_bytes().to_vec());
        data.insert(format!("ключ/{i}"), format!("значение {i}").into_bytes());
        data.insert(format!("🔑 {i} 鍵"), vec![i as u8; (i % 7) as usize]);
    }
    for i in 0..5u8 {
        let big: Vec<u8> = (0..100_000u32).map(|j| (j as u8) ^ i).collect();
        data.insert(format!("big é {i}"), big);
    }
    data.insert(String::new(), b"the empty key".to_vec());
    data
}

fn small_data(who: &str) -> BTreeMap<String, Vec<u8>> {
    (0..4)
        .map(|i| (format!("{who} {i}"), format!("{who} ✓ {i}").into_bytes()))
        .collect()
}

/// `put_all` in calls of at most 100 keys.
async fn put(stub: &VaultStub, data: &BTreeMap<String, Vec<u8>>) {
    let entries: Vec<_> = data.clone().into_iter().collect();
    for chunk in entries.chunks(100) {
        within("put_all", stub.put_all(chunk.to_vec())).await;
    }
}

async fn list(stub: &VaultStub) -> BTreeMap<String, Vec<u8>> {
    within("list", stub.list()).await.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_moved_from_fjall_to_memory_to_fjall_reads_the_same() {
    move_through(&MemoryBackend::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_moved_from_fjall_to_postgres_to_fjall_reads_the_same() {
    let pg = PgServer::start();
    pg.create_database("migrate");
    let postgres = PostgresBackend::connect(&pg.url("migrate")).unwrap();
    move_through(&postgres).await;
    // The tables are not empty now: a second copy into them is refused.
    let err = migrate::copy(&MemoryBackend::new(), &postgres).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    postgres.close().unwrap();
}

/// A runtime on fjall writes objects; they move to `middle` and on to a second fjall
/// directory, each hop verified; a runtime there reads them through their stubs.
async fn move_through(middle: &dyn Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (first_dir, second_dir) = (dir.path().join("first"), dir.path().join("second"));

    // A runtime on fjall: two named objects (one with an alarm and two schedules) and one
    // reached by a unique ID.
    let (alice, bob, carol) = (alice_data(), small_data("bob"), small_data("carol"));
    let rt = runtime(&first_dir, "first");
    let vaults = rt.namespace::<Vault>();
    let carol_id = vaults.new_unique_id();
    put(&vaults.get_by_name("alice"), &alice).await;
    put(&vaults.get(carol_id.clone()), &carol).await;
    let bob_stub = vaults.get_by_name("bob");
    put(&bob_stub, &bob).await;
    let later = SystemTime::now() + Duration::from_secs(3600);
    within("set_alarm", bob_stub.set_alarm(later)).await;
    within(
        "set_schedule",
        bob_stub.set_schedule("weekly".into(), later + Duration::from_secs(7 * 86_400)),
    )
    .await;
    let alarm_before = within("alarm_at", bob_stub.alarm_at()).await;
    // Comes due once the first runtime is down: it fires in the second one.
    let soon = SystemTime::now() + Duration::from_secs(3);
    within("set_schedule", bob_stub.set_schedule("soon".into(), soon)).await;
    let schedules_before = within("schedules", bob_stub.schedules()).await;
    assert_eq!(schedules_before.len(), 2, "{schedules_before:?}");
    within("shutdown", rt.shutdown()).await;

    // fjall → middle → fjall, each hop verified.
    let first = fjall(&first_dir);
    let copied = migrate::copy(&first, middle).unwrap();
    let data_keys = (alice.len() + bob.len() + carol.len()) as u64;
    // Beside the data: two names (carol has none), three alarms and their three due entries.
    assert_eq!(copied.keys, data_keys + 2 + 3 + 3, "{copied}");
    assert_eq!(copied.objects, 3, "{copied}");
    assert!(copied.bytes > 500_000, "{copied}");
    assert_eq!(migrate::verify(&first, middle).unwrap(), copied);
    let second = fjall(&second_dir);
    assert_eq!(migrate::copy(middle, &second).unwrap(), copied);
    assert_eq!(migrate::verify(middle, &second).unwrap(), copied);
    assert_eq!(migrate::verify(&first, &second).unwrap(), copied);
    first.close().unwrap();
    second.close().unwrap();
    drop((first, second));

    // A runtime on the second directory sees every key, the alarms and the names.
    let rt = runtime(&second_dir, "second");
    let vaults = rt.namespace::<Vault>();
    // Reached first by ID only (an ID parsed from a string has no name), an object knows
    // the name it was created by from storage.
    let by_id = |id: &durable_runtime::ObjectId| {
        vaults.get(vaults.id_from_string(&id.to_string()).unwrap())
    };
    let alice_by_id = by_id(&vaults.id_from_name("alice"));
    assert_eq!(
        within("name", alice_by_id.name()).await.as_deref(),
        Some("alice")
    );
    assert_eq!(within("name", by_id(&carol_id).name()).await, None);
    let alice_stub = vaults.get_by_name("alice");
    assert!(list(&alice_stub).await == alice, "alice's keys and values");
    for key in ["ключ/42", "🔑 7 鍵", "big é 3", ""] {
        let value = within("get", alice_stub.get(key.into())).await;
        assert_eq!(value.as_ref(), alice.get(key), "alice's {key:?}");
    }
    assert_eq!(list(&vaults.get(carol_id.clone())).await, carol);

    let bob_stub = vaults.get_by_name("bob");
    assert_eq!(within("alarm_at", bob_stub.alarm_at()).await, alarm_before);
    // "soon" fires here, from the due index the copy carried; the other two wait.
    let fired = tokio::time::timeout(GENEROUS, async {
        loop {
            let fired = within("fired", bob_stub.fired()).await;
            if !fired.is_empty() {
                return fired;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the schedule \"soon\" never fired after the move");
    assert_eq!(fired, "soon@second;", "it fired after the move, not before");
    let mut expected = bob.clone();
    expected.insert("fired".into(), fired.into_bytes());
    assert_eq!(list(&bob_stub).await, expected);
    let schedules_after = within("schedules", bob_stub.schedules()).await;
    assert_eq!(
        schedules_after,
        schedules_before
            .into_iter()
            .filter(|(name, _)| name != "soon")
            .collect::<Vec<_>>()
    );
    within("shutdown", rt.shutdown()).await;
}

/// A memory backend written by a runtime: named objects, each with `small_data`.
async fn filled(names: &[&str]) -> Arc<MemoryBackend> {
    let backend = Arc::new(MemoryBackend::new());
    let rt = Runtime::builder()
        .backend(backend.clone())
        .register::<Vault>()
        .open()
        .unwrap();
    for name in names {
        put(
            &rt.namespace::<Vault>().get_by_name(name),
            &small_data(name),
        )
        .await;
    }
    within("shutdown", rt.shutdown()).await;
    backend
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_holding_data_is_refused_and_left_as_it_was() {
    let from = filled(&["a", "b"]).await;
    let dir = tempfile::tempdir().unwrap();
    // The destination already holds one object of its own.
    {
        let rt = runtime(dir.path(), "destination");
        put(&rt.namespace::<Vault>().get_by_name("z"), &small_data("z")).await;
        within("shutdown", rt.shutdown()).await;
    }
    let to = fjall(dir.path());
    let before = entries(&to);
    assert!(!before.is_empty());

    let err = migrate::copy(&*from, &to).expect_err("a destination holding data is refused");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let message = err.to_string();
    assert!(message.contains("destination is not empty"), "{message}");
    assert!(
        message.contains("empty this one first"),
        "says what to do: {message}"
    );
    assert_eq!(entries(&to), before, "the destination is unchanged");
    to.close().unwrap();
    drop(to);

    // Its own data is all there for a runtime, and none of the source's.
    let rt = runtime(dir.path(), "destination");
    let vaults = rt.namespace::<Vault>();
    assert_eq!(list(&vaults.get_by_name("z")).await, small_data("z"));
    assert!(list(&vaults.get_by_name("a")).await.is_empty());
    within("shutdown", rt.shutdown()).await;

    // An empty destination takes the copy.
    let empty = MemoryBackend::new();
    let report = migrate::copy(&*from, &empty).unwrap();
    assert_eq!(migrate::verify(&*from, &empty).unwrap(), report);
}

/// Applies one write to `backend`.
fn write(backend: &dyn Backend, key: &[u8], value: Option<&[u8]>) {
    backend.apply(&[Write { key, value }]).unwrap();
}

/// `verify`'s error, which must be a storage error naming `what` and saying `how`.
fn difference(a: &dyn Backend, b: &dyn Backend, what: &str, how: &str) {
    let err = migrate::verify(a, b).expect_err("the backends differ");
    assert_eq!(err.kind(), ErrorKind::Storage, "{err}");
    let message = err.to_string();
    assert!(message.contains(what), "names {what}: {message}");
    assert!(message.contains(how), "says {how:?}: {message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_a_changed_a_missing_and_an_extra_key() {
    let a = filled(&["a", "b", "c"]).await;
    let b = MemoryBackend::new();
    let report = migrate::copy(&*a, &b).unwrap();
    assert_eq!(migrate::verify(&*a, &b).unwrap(), report);
    assert_eq!(
        (report.objects, report.keys),
        (3, 3 * 4 + 3),
        "three objects, four keys and a name each: {report}"
    );

    // The data key of "b 2" in object b, found by its value.
    let stored = entries(&b);
    let (key, value) = stored
        .iter()
        .find(|(_, v)| v.ends_with("b ✓ 2".as_bytes()))
        .cloned()
        .expect("the data key of \"b 2\"");
    let ids = Runtime::in_memory();
    let vaults = ids.namespace::<Vault>();
    let object = vaults.id_from_name("b").to_string();
    let named = format!("object {object}, key \"b 2\"");

    // A changed value: same length, one byte off.
    let mut changed = value.clone();
    *changed.last_mut().unwrap() ^= 1;
    write(&b, &key, Some(&changed));
    difference(&*a, &b, &named, "different values");
    difference(
        &*a,
        &b,
        "",
        &format!("first different at byte {}", value.len() - 1),
    );
    // A longer one.
    let mut longer = value.clone();
    longer.push(0);
    write(&b, &key, Some(&longer));
    difference(&*a, &b, &named, "one a prefix of the other");

    // A missing key, seen from either side.
    write(&b, &key, None);
    difference(
        &*a,
        &b,
        &named,
        "in the first backend, missing from the second",
    );
    difference(
        &b,
        &*a,
        &named,
        "in the second backend, missing from the first",
    );
    write(&b, &key, Some(&value));
    assert_eq!(migrate::verify(&*a, &b).unwrap(), report, "repaired");

    // An extra data key, and an extra key of another kind (an alarm: `ALARM ‖ id ‖
    // schedule`, see keys.rs), named in hex.
    let mut extra = key[..key.len() - "b 2".len()].to_vec();
    extra.extend_from_slice("zz ✓".as_bytes());
    write(&b, &extra, Some(b"x"));
    difference(
        &*a,
        &b,
        &format!("object {object}, key \"zz ✓\""),
        "in the second backend, missing from the first",
    );
    write(&b, &extra, None);
    let mut alarm = vec![0x02];
    alarm.extend_from_slice(vaults.id_from_name("c").as_bytes());
    alarm.extend_from_slice(b"daily");
    write(&b, &alarm, Some(&0u64.to_be_bytes()));
    let hex: String = alarm.iter().map(|b| format!("{b:02x}")).collect();
    difference(
        &*a,
        &b,
        &format!("alarm key 0x{hex}"),
        "in the second backend, missing from the first",
    );
    write(&b, &alarm, None);
    assert_eq!(migrate::verify(&*a, &b).unwrap(), report, "repaired");
    assert_eq!(migrate::verify(&b, &*a).unwrap(), report);
    assert_eq!(
        migrate::verify(&MemoryBackend::new(), &MemoryBackend::new()).unwrap(),
        Report::default()
    );
}
