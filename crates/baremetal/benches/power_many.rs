//! 100 machines powered on at once through the [`Controller`], each behind a BMC that takes
//! 20 ms per request and shows a power change 300 ms after accepting it (the goal:
//! under 2 s of wall time). The controller runs with Ironic's default pacing (first poll after
//! 0.5 s ± 25 %), so one node alone takes about 0.55 s; the figure shows what concurrency adds.

use std::sync::Arc;
use std::time::Duration;

use baremetal::power::fake::{FakeBmc, FakeConfig};
use baremetal::power::{Controller, Policy, PowerAction, PowerDriver};
use baremetal::PowerState;
use criterion::{criterion_group, criterion_main, Criterion};

fn fleet(count: usize) -> Vec<FakeBmc> {
    (0..count)
        .map(|i| {
            FakeBmc::new(
                format!("node-{i}"),
                PowerState::Off,
                FakeConfig {
                    latency: Duration::from_millis(20),
                    apply_delay: Duration::from_millis(300),
                    ..FakeConfig::default()
                },
            )
        })
        .collect()
}

fn power_on(runtime: &tokio::runtime::Runtime, count: usize, concurrency: usize) {
    let bmcs = fleet(count);
    let drivers: Vec<Arc<dyn PowerDriver>> = bmcs
        .iter()
        .map(|b| Arc::new(b.driver(None)) as Arc<dyn PowerDriver>)
        .collect();
    let controller = Controller::new(Policy::default());
    let results = runtime.block_on(
        controller.for_each(drivers, concurrency, |c, d| async move {
            c.set_power(d.as_ref(), PowerAction::On).await
        }),
    );
    assert!(results.iter().all(Result::is_ok));
    assert!(bmcs.iter().all(|b| b.power() == PowerState::On));
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("power_on");
    group.sample_size(10);
    group.bench_function("1 node", |b| b.iter(|| power_on(&runtime, 1, 1)));
    group.bench_function("100 nodes at once", |b| {
        b.iter(|| power_on(&runtime, 100, 100))
    });
    group.bench_function("100 nodes, 20 at a time", |b| {
        b.iter(|| power_on(&runtime, 100, 20))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
