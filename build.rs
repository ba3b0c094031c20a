//! Builds the protobuf descriptor set that gRPC reflection serves.
//!
//! envoy-types ships generated Rust for the Envoy APIs but no descriptor set, so the import
//! closure of the two services sluice implements is vendored in `proto/` and compiled here with
//! protox (pure Rust: no `protoc` on the build machine).

use prost::Message;

fn main() {
    let files = [
        "envoy/service/ratelimit/v3/rls.proto",
        "envoy/service/auth/v3/external_auth.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    let set = match protox::compile(files, ["proto"]) {
        Ok(set) => set,
        Err(e) => panic!("compiling vendored protos for reflection: {e}"),
    };
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let path = std::path::Path::new(&out).join("envoy_descriptor.bin");
    std::fs::write(&path, set.encode_to_vec()).expect("writing descriptor set");
}
