//! User types as arguments and results, typed errors, attributes and doc comments on methods,
//! `Self` in signatures, raw identifiers, argument patterns, private helpers.
use std::collections::BTreeMap;

use durable_runtime::{durable_object, Context, Error, Result, Runtime};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub name: String,
    pub count: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    Tool,
    Part,
}

/// A typed error that crosses the stub intact.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub enum InventoryError {
    OutOfStock { name: String },
    Runtime(String),
}

impl From<Error> for InventoryError {
    fn from(err: Error) -> Self {
        InventoryError::Runtime(err.to_string())
    }
}

/// An inventory without class options: defaults apply.
pub struct Inventory {
    ctx: Context,
}

#[durable_object]
impl Inventory {
    /// Doc comments on `new` are kept.
    #[inline]
    pub fn new(ctx: Context) -> Self {
        Inventory { ctx }
    }

    /// Adds items. Doc comments carry over to the stub.
    #[allow(clippy::needless_pass_by_value)]
    pub async fn add(&mut self, item: Item, kind: Kind) -> Result<u32> {
        let mut all = self.all()?;
        let entry = all.entry(item.name.clone()).or_insert((0, kind));
        entry.0 += item.count;
        let count = entry.0;
        self.ctx.storage_mut().put("items", &all)?;
        Ok(count)
    }

    /// Takes one item out, or says it is out of stock.
    pub async fn take(&mut self, name: String) -> std::result::Result<Item, InventoryError> {
        let mut all = self.all()?;
        match all.get_mut(&name) {
            Some((count, _)) if *count > 0 => {
                *count -= 1;
                let left = *count;
                self.ctx.storage_mut().put("items", &all)?;
                Ok(Item { name, count: left })
            }
            _ => Err(InventoryError::OutOfStock { name }),
        }
    }

    pub async fn find(&self, names: Vec<String>) -> Result<Vec<Option<(u32, Kind)>>> {
        let all = self.all()?;
        Ok(names.iter().map(|n| all.get(n).copied()).collect())
    }

    #[deprecated = "use `find`"]
    pub async fn r#type(&self, (name, _unused): (String, u8)) -> Option<Kind> {
        self.all().ok()?.get(&name).map(|(_, kind)| *kind)
    }

    pub async fn twins(&self, mut a: Item, _: bool) -> [Item; 2] {
        a.count += 1;
        [a.clone(), a]
    }

    /// `Self` in a signature names the class.
    pub async fn echo_kind(&self, kind: <Self as Alias>::Kind) -> Kind {
        kind
    }

    pub async fn clear(&mut self) {
        let _ = self.ctx.storage_mut().delete("items");
    }

    // A private helper stays a plain method, even when it is async or borrows.
    fn all(&self) -> Result<BTreeMap<String, (u32, Kind)>> {
        Ok(self.ctx.storage().get("items")?.unwrap_or_default())
    }

    #[allow(dead_code)]
    async fn borrowing_helper(&self, name: &str) -> usize {
        name.len()
    }
}

pub trait Alias {
    type Kind;
}

impl Alias for Inventory {
    type Kind = Kind;
}

#[tokio::main]
#[allow(deprecated)]
async fn main() -> Result<()> {
    let rt = Runtime::in_memory();
    let inv = rt.namespace::<Inventory>().get_by_name("shop");
    let hammer = Item {
        name: "hammer".into(),
        count: 2,
    };
    assert_eq!(inv.add(hammer.clone(), Kind::Tool).await?, 2);
    assert_eq!(
        inv.take("hammer".into()).await,
        Ok(Item {
            name: "hammer".into(),
            count: 1
        })
    );
    assert_eq!(
        inv.take("nail".into()).await,
        Err(InventoryError::OutOfStock {
            name: "nail".into()
        })
    );
    assert_eq!(
        inv.find(vec!["hammer".into(), "nail".into()]).await?,
        vec![Some((1, Kind::Tool)), None]
    );
    assert_eq!(inv.r#type(("hammer".into(), 0)).await?, Some(Kind::Tool));
    assert_eq!(inv.twins(hammer, true).await?[1].count, 3);
    assert_eq!(inv.echo_kind(Kind::Part).await?, Kind::Part);
    inv.clear().await?;
    assert_eq!(inv.find(vec!["hammer".into()]).await?, vec![None]);
    Ok(())
}
