use durable_runtime::Runtime;
use durable_tests::Counter;

#[tokio::test]
async fn increments_and_reads_back() {
    let rt = Runtime::in_memory();
    let counters = rt.namespace::<Counter>();
    let a = counters.get_by_name("A");
    assert_eq!(a.increment(1).await.unwrap(), 1);
    assert_eq!(a.increment(2).await.unwrap(), 3);
    assert_eq!(a.get_counter_value().await.unwrap(), 3);
    assert_eq!(
        counters.get_by_name("B").get_counter_value().await.unwrap(),
        0
    );
}
