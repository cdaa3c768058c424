//! The wire schema lock: `ui-tests/schema.lock` holds the schema of every class of this crate
//! (the compile-pass cases, compiled here as modules, and `ui-tests/renamed`), one line per
//! method. A change to a schema that is not also made to the lock fails this test; after a
//! deliberate change, rewrite the lock with
//! `UPDATE_SCHEMA_LOCK=1 cargo test -p durable-ui-tests --test schema` and review its diff: a
//! changed or removed line is a call that peers running the previous build cannot make.

use std::collections::BTreeSet;

use durable_runtime::{DurableObject, MethodSchema};

#[allow(dead_code)]
#[path = "pass/class_options.rs"]
mod class_options;
#[allow(dead_code)]
#[path = "pass/counter.rs"]
mod counter;
#[allow(dead_code)]
#[path = "pass/crate_override.rs"]
mod crate_override;
#[allow(dead_code)]
#[path = "pass/lifecycle_hooks.rs"]
mod lifecycle_hooks;
#[allow(dead_code)]
#[path = "pass/no_implicit_prelude.rs"]
mod no_implicit_prelude;
#[allow(dead_code, deprecated)]
#[path = "pass/user_types.rs"]
mod user_types;
#[allow(dead_code)]
#[path = "pass/wire_names.rs"]
mod wire_names;

const LOCK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.lock");

const HEADER: &str = "\
# The wire schema of the classes of durable-ui-tests (tests/pass/*.rs and renamed/).
# One line per method: class, wire name, access, argument types, result type, method ID.
# Checked by `cargo test -p durable-ui-tests --test schema`; after a deliberate change, rewrite
# it with UPDATE_SCHEMA_LOCK=1 and review the diff: a changed or removed line is a call that
# peers running the previous build cannot make.
";

/// A locked class: its name, the name its IDs derive from (see `ClassOptions::wire_name`), and
/// its methods.
struct Locked {
    name: &'static str,
    wire_name: &'static str,
    methods: &'static [MethodSchema],
}

/// Every class whose schema is locked.
fn classes() -> Vec<Locked> {
    fn of<T: DurableObject>() -> Locked {
        let options = T::class_options();
        Locked {
            name: options.name,
            wire_name: options.wire_name(),
            methods: T::schema(),
        }
    }
    vec![
        of::<class_options::ChatRoom>(),
        of::<class_options::Lobby>(),
        of::<class_options::Plain>(),
        of::<counter::Counter>(),
        of::<crate_override::Overridden>(),
        of::<lifecycle_hooks::Reminder>(),
        of::<no_implicit_prelude::Quiet>(),
        of::<user_types::Inventory>(),
        of::<wire_names::Books>(),
        of::<durable_ui_tests_renamed::Greeter>(),
    ]
}

fn lock_line(class: &str, m: &MethodSchema) -> String {
    let args: Vec<&str> = m.args.iter().map(|&(_, ty)| ty).collect();
    format!(
        "{class} {} {} ({}) -> {} {:016x}",
        m.wire_name,
        m.access.as_str(),
        args.join(", "),
        m.output,
        m.id
    )
}

#[test]
fn schema_lock_matches_the_classes() {
    let lines: BTreeSet<String> = classes()
        .into_iter()
        .flat_map(|class| class.methods.iter().map(move |m| lock_line(class.name, m)))
        .collect();
    let actual = format!(
        "{HEADER}{}\n",
        lines.iter().cloned().collect::<Vec<_>>().join("\n")
    );
    if std::env::var_os("UPDATE_SCHEMA_LOCK").is_some() {
        std::fs::write(LOCK, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(LOCK).unwrap_or_default();
    if expected == actual {
        return;
    }
    let locked: BTreeSet<String> = expected
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(str::to_owned)
        .collect();
    let mut report = String::new();
    for line in locked.difference(&lines) {
        report += &format!("\n  - {line}");
    }
    for line in lines.difference(&locked) {
        report += &format!("\n  + {line}");
    }
    panic!(
        "the wire schema changed without ui-tests/schema.lock (- locked, + now):{report}\n\
         If the change is deliberate, rewrite the lock with \
         UPDATE_SCHEMA_LOCK=1 cargo test -p durable-ui-tests --test schema, and review it: a \
         changed or removed line is a call that peers running the previous build cannot make."
    );
}

#[test]
fn method_ids_derive_from_class_and_wire_name_and_are_unique() {
    let (mut names, mut wire_names) = (BTreeSet::new(), BTreeSet::new());
    for Locked {
        name: class,
        wire_name,
        methods,
    } in classes()
    {
        assert!(names.insert(class), "two locked classes named {class}");
        assert!(
            wire_names.insert(wire_name),
            "two locked classes with the wire name {wire_name}"
        );
        let mut ids = BTreeSet::new();
        for m in methods {
            // The stored name (`renamed_from`, if any), not the display name.
            assert_eq!(
                m.id,
                MethodSchema::method_id(wire_name, m.wire_name),
                "{class}.{}",
                m.wire_name
            );
            assert!(
                ids.insert(m.id),
                "{class}: two methods with ID {:016x}",
                m.id
            );
        }
    }
}

#[test]
fn a_wire_name_is_not_a_position() {
    // `Books` declares `current_balance` (wire name `balance`) first; the ID depends only on
    // the class's name and the wire name, so moving or adding methods changes nothing.
    let schema = wire_names::Books::schema();
    let balance = schema.iter().find(|m| m.wire_name == "balance").unwrap();
    assert_eq!(balance.name, "current_balance");
    assert_eq!(balance.id, MethodSchema::method_id("Ledger", "balance"));
}
