//! The gRPC baseline of the remote-call benchmark (`src/remote.rs`): tonic's client and server
//! for one unary method, generated without `protoc` (the messages are hand-written
//! `prost::Message` structs in `src/remote.rs`).

fn main() {
    let increment = tonic_build::manual::Method::builder()
        .name("increment")
        .route_name("Increment")
        .input_type("crate::remote::grpc::IncrementRequest")
        .output_type("crate::remote::grpc::IncrementReply")
        .codec_path("tonic_prost::ProstCodec")
        .build();
    let service = tonic_build::manual::Service::builder()
        .name("Counter")
        .package("bench")
        .method(increment)
        .build();
    tonic_build::manual::Builder::new().compile(&[service]);
}
