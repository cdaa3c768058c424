//! Local calls to a warm object against a raw tokio mpsc + oneshot round trip and against two
//! actor libraries, kameo (`ask`) and ractor (`call`): one caller's latency, and the throughput
//! of 100 callers over 100 objects. Each actor does the same work (adds to a field).

use std::sync::Arc;
use std::time::{Duration, Instant};

use durable_runtime::Runtime;
use kameo::actor::Spawn;
use kameo::message::{Context as KameoContext, Message};
use ractor::{ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::{mpsc, oneshot};

use crate::{call_ns, line, median, raw_round_trip_ns, Pinger};

// ---- kameo

#[derive(kameo::Actor)]
struct KameoPinger {
    calls: u64,
}

struct Bump(u64);

impl Message<Bump> for KameoPinger {
    type Reply = u64;

    async fn handle(&mut self, Bump(x): Bump, _: &mut KameoContext<Self, u64>) -> u64 {
        self.calls += 1;
        x + self.calls
    }
}

fn kameo_spawn() -> kameo::actor::ActorRef<KameoPinger> {
    KameoPinger::spawn(KameoPinger { calls: 0 })
}

async fn kameo_round_trip_ns(n: u64) -> f64 {
    let actor = kameo_spawn();
    actor.ask(Bump(0)).await.unwrap();
    let start = Instant::now();
    for i in 0..n {
        std::hint::black_box(actor.ask(Bump(i)).await.unwrap());
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

// ---- ractor

struct RactorPinger;

enum RactorMsg {
    Bump(u64, RpcReplyPort<u64>),
}

impl ractor::Actor for RactorPinger {
    type Msg = RactorMsg;
    type State = u64;
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<RactorMsg>, _: ()) -> Result<u64, ActorProcessingErr> {
        Ok(0)
    }

    async fn handle(
        &self,
        _: ActorRef<RactorMsg>,
        msg: RactorMsg,
        calls: &mut u64,
    ) -> Result<(), ActorProcessingErr> {
        let RactorMsg::Bump(x, reply) = msg;
        *calls += 1;
        let _ = reply.send(x + *calls);
        Ok(())
    }
}

async fn ractor_spawn() -> ActorRef<RactorMsg> {
    let (actor, _handle) = ractor::Actor::spawn(None, RactorPinger, ()).await.unwrap();
    actor
}

async fn ractor_call(actor: &ActorRef<RactorMsg>, x: u64) -> u64 {
    ractor::call!(actor, RactorMsg::Bump, x).unwrap()
}

async fn ractor_round_trip_ns(n: u64) -> f64 {
    let actor = ractor_spawn().await;
    ractor_call(&actor, 0).await;
    let start = Instant::now();
    for i in 0..n {
        std::hint::black_box(ractor_call(&actor, i).await);
    }
    let ns = start.elapsed().as_nanos() as f64 / n as f64;
    actor.stop(None);
    ns
}

// ---- 100 callers x 100 objects

const CALLERS: usize = 100;
const OBJECTS: usize = 100;

#[derive(Clone, Copy)]
enum Kind {
    Raw,
    Shared,
    Exclusive,
    Kameo,
    Ractor,
}

/// Calls per second of `CALLERS` tasks, each going round the `OBJECTS` objects.
async fn throughput(kind: Kind, dur: Duration) -> f64 {
    type Raw = mpsc::Sender<(u64, oneshot::Sender<u64>)>;
    enum Targets {
        Raw(Vec<Raw>),
        Ours(Vec<crate::PingerStub>, bool),
        Kameo(Vec<kameo::actor::ActorRef<KameoPinger>>),
        Ractor(Vec<ActorRef<RactorMsg>>),
    }
    let rt = Runtime::in_memory();
    let targets = match kind {
        Kind::Raw => Targets::Raw(
            (0..OBJECTS)
                .map(|_| {
                    let (tx, mut rx) = mpsc::channel::<(u64, oneshot::Sender<u64>)>(4096);
                    tokio::spawn(async move {
                        let mut calls = 0u64;
                        while let Some((x, reply)) = rx.recv().await {
                            calls += 1;
                            let _ = reply.send(x + calls);
                        }
                    });
                    tx
                })
                .collect(),
        ),
        Kind::Shared | Kind::Exclusive => {
            let ns = rt.namespace::<Pinger>();
            Targets::Ours(
                (0..OBJECTS)
                    .map(|i| ns.get_by_name(&format!("p{i}")))
                    .collect(),
                matches!(kind, Kind::Exclusive),
            )
        }
        Kind::Kameo => Targets::Kameo((0..OBJECTS).map(|_| kameo_spawn()).collect()),
        Kind::Ractor => {
            let mut actors = Vec::new();
            for _ in 0..OBJECTS {
                actors.push(ractor_spawn().await);
            }
            Targets::Ractor(actors)
        }
    };
    let targets = Arc::new(targets);
    let deadline = Instant::now() + dur;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CALLERS {
        let targets = targets.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            let mut k = c;
            while Instant::now() < deadline {
                // A batch between clock reads, so the clock is not what we measure.
                for _ in 0..16 {
                    let o = k % OBJECTS;
                    let v = match &*targets {
                        Targets::Raw(txs) => {
                            let (otx, orx) = oneshot::channel();
                            txs[o].send((k as u64, otx)).await.unwrap();
                            orx.await.unwrap()
                        }
                        Targets::Ours(stubs, true) => stubs[o].bump(k as u64).await.unwrap(),
                        Targets::Ours(stubs, false) => stubs[o].ping(k as u64).await.unwrap(),
                        Targets::Kameo(actors) => actors[o].ask(Bump(k as u64)).await.unwrap(),
                        Targets::Ractor(actors) => ractor_call(&actors[o], k as u64).await,
                    };
                    std::hint::black_box(v);
                    k += 1;
                    done += 1;
                }
            }
            done
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    let rate = total as f64 / start.elapsed().as_secs_f64();
    if let Targets::Ractor(actors) = &*targets {
        for a in actors {
            a.stop(None);
        }
    }
    rate
}

/// Prints one line per comparison; rounds are interleaved, each figure is a median.
pub async fn run(rounds: usize, n: u64, dur: Duration) {
    let mut lat: [Vec<f64>; 5] = Default::default();
    let mut thr: [Vec<f64>; 5] = Default::default();
    // Callers run in spawned tasks, as in a server: on a worker thread of the runtime.
    for _ in 0..rounds {
        lat[0].push(tokio::spawn(raw_round_trip_ns(n)).await.unwrap());
        lat[1].push(tokio::spawn(call_ns(n, false)).await.unwrap());
        lat[2].push(tokio::spawn(call_ns(n, true)).await.unwrap());
        lat[3].push(tokio::spawn(kameo_round_trip_ns(n)).await.unwrap());
        lat[4].push(tokio::spawn(ractor_round_trip_ns(n)).await.unwrap());
        for (i, kind) in [
            Kind::Raw,
            Kind::Shared,
            Kind::Exclusive,
            Kind::Kameo,
            Kind::Ractor,
        ]
        .into_iter()
        .enumerate()
        {
            thr[i].push(tokio::spawn(throughput(kind, dur)).await.unwrap());
        }
    }
    let lat = lat.map(median);
    let thr = thr.map(median);
    let baselines = [
        (0, "tokio mpsc+oneshot"),
        (3, "kameo ask"),
        (4, "ractor call"),
    ];
    for (ours, what) in [(1, "shared"), (2, "exclusive")] {
        for (b, name) in baselines {
            line(
                &format!("local {what} call, 1 caller"),
                lat[ours],
                name,
                lat[b],
                "ns/call",
                true,
            );
        }
    }
    for (ours, what) in [(1, "shared"), (2, "exclusive")] {
        for (b, name) in baselines {
            line(
                &format!("local {what} calls, {CALLERS} callers x {OBJECTS} objects"),
                thr[ours],
                name,
                thr[b],
                "calls/s",
                false,
            );
        }
    }
}
