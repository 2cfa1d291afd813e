//! `infer serve` against clients that mean harm, on the gRPC face and off
//! it: each test is one way found to deny every other client (or grow the
//! server), replayed with a raw HTTP/2 client, and what must hold while it
//! runs: an authenticated infer on either face answers within 1 s, the
//! resident memory stays within 256 MiB of idle, and the attacker's
//! connection is cut within its limit.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use prost::Message;

use super::{
    get, grpc_status, h2_client, index, json_infer, json_rows, metric, mnist_images, post_json, request, Server,
};
use crate::{root, tmp};
use serve::proto::{model_infer_request::InferInputTensor, InferParameter, ModelInferRequest};

/// A gRPC message frame: the compressed flag, the length, the bytes.
fn frame(compressed: bool, message: &[u8]) -> bytes::Bytes {
    let mut f = vec![u8::from(compressed)];
    f.extend_from_slice(&(message.len() as u32).to_be_bytes());
    f.extend_from_slice(message);
    f.into()
}

/// A message of `n` bytes that protobuf decodes as any request (one
/// unknown field, 15, skipped by the decoder).
fn padding(n: usize) -> Vec<u8> {
    let mut m = vec![0x7a];
    let mut len = n;
    while len >= 0x80 {
        m.push((len as u8 & 0x7f) | 0x80);
        len >>= 7;
    }
    m.push(len as u8);
    m.resize(m.len() + n, b'x');
    m
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// The headers of a call to `rpc`, with `Bearer KEY` if a key is given.
fn call(rpc: &str, key: Option<&str>, gzip: bool) -> axum::http::Request<()> {
    let mut r = axum::http::Request::post(format!("/inference.GRPCInferenceService/{rpc}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(k) = key {
        r = r.header("authorization", format!("Bearer {k}"));
    }
    if gzip {
        r = r.header("grpc-encoding", "gzip");
    }
    r.body(()).unwrap()
}

/// A ModelInfer request for the classifier: `n` images as raw contents.
fn model_infer(model: &str, images: &[f32], n: usize) -> ModelInferRequest {
    ModelInferRequest {
        model_name: model.into(),
        inputs: vec![InferInputTensor {
            name: "image".into(),
            datatype: "FP32".into(),
            shape: vec![n as i64, 1, 28, 28],
            ..Default::default()
        }],
        raw_input_contents: vec![images.iter().flat_map(|v| v.to_le_bytes()).collect()],
        ..Default::default()
    }
}

/// Sends one call and returns its grpc-status, within `within`.
async fn status_of(
    client: &mut h2::client::SendRequest<bytes::Bytes>,
    request: axum::http::Request<()>,
    body: bytes::Bytes,
    within: Duration,
) -> String {
    let (response, mut stream) = client.send_request(request, false).unwrap();
    stream.reserve_capacity(body.len());
    stream.send_data(body, true).unwrap();
    let response = tokio::time::timeout(within, response).await.expect("no answer in time").unwrap();
    tokio::time::timeout(within, grpc_status(response)).await.expect("no status in time")
}

/// A client connection whose receive window is 0: it answers PINGs and
/// SETTINGS as any HTTP/2 stack does, and takes no DATA. Returns the
/// sender and the task that ends when the server closes the connection.
async fn window_zero_client(addr: &str) -> (h2::client::SendRequest<bytes::Bytes>, tokio::task::JoinHandle<()>) {
    client_with_window(addr, 0).await
}

/// A client connection announcing a receive window of `window` bytes.
async fn client_with_window(
    addr: &str,
    window: u32,
) -> (h2::client::SendRequest<bytes::Bytes>, tokio::task::JoinHandle<()>) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::Builder::new().initial_window_size(window).handshake(tcp).await.unwrap();
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    (client.ready().await.unwrap(), task)
}

/// The server's resident memory now and at its peak, in MiB.
fn rss_mib(server: &Server) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    let field = |name: &str| {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse::<f64>().unwrap() / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// An authenticated 64-image infer on each face answers within 1 s.
async fn others_are_answered(server: &Server, key: Option<&str>, images: &[f32]) {
    let (http, body) = (server.http.clone(), json_infer(images, 64, &["probabilities"]));
    let header: Vec<(&str, String)> = key.map(|k| ("authorization", format!("Bearer {k}"))).into_iter().collect();
    let t0 = Instant::now();
    let r = tokio::task::spawn_blocking(move || request(&http, "POST", "/v2/models/classifier/infer", &header, &body))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "REST: {}", String::from_utf8_lossy(&r.body));
    assert!(t0.elapsed() < Duration::from_secs(1), "REST answered after {:?}", t0.elapsed());
    let mut client = h2_client(&server.grpc).await;
    let message = frame(false, &model_infer("classifier", images, 64).encode_to_vec());
    let t0 = Instant::now();
    let status = status_of(&mut client, call("ModelInfer", key, false), message, Duration::from_secs(5)).await;
    assert_eq!(status, "0", "gRPC ModelInfer");
    assert!(t0.elapsed() < Duration::from_secs(1), "gRPC answered after {:?}", t0.elapsed());
}

/// One unauthenticated connection with a receive window of 0 sends
/// liveness calls, the one call the key does not guard: 32 whose messages
/// are 200 KB (they used to be read, answered, and held in the budget
/// until the answer left, which it never does) and 16 empty ones (their
/// answers stall). Every other client is still answered within 1 s; the
/// big messages are refused at 4 KiB; the connection is cut within
/// --read-timeout of opening (it never sends the key); and SIGTERM exits 0.
#[test]
fn an_unauthenticated_client_holds_no_bytes_and_no_slot() {
    let dir = tmp();
    let (images, _) = mnist_images(dir.path(), 64);
    let mut server = Server::start(
        &root().join("models"),
        &["--api-key", "k", "--read-timeout", "2", "--max-body", "512K", "--max-inflight-bytes", "2M", "--log", "warn"],
    );
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let opened = Instant::now();
        let (mut attacker, connection) = window_zero_client(&server.grpc).await;
        let mut refused = Vec::new();
        for _ in 0..32 {
            let (response, mut stream) = attacker.send_request(call("ServerLive", None, false), false).unwrap();
            stream.send_data(frame(false, &padding(200_000)), true).unwrap();
            refused.push(response);
        }
        let mut stalled = Vec::new();
        for _ in 0..16 {
            let (response, mut stream) = attacker.send_request(call("ServerLive", None, false), false).unwrap();
            stream.send_data(frame(false, &[]), true).unwrap();
            stalled.push((response, stream));
        }
        for response in refused {
            let response = tokio::time::timeout(Duration::from_secs(2), response).await.expect("refused in time");
            assert_eq!(grpc_status(response.unwrap()).await, "8", "RESOURCE_EXHAUSTED at 4 KiB");
        }
        others_are_answered(&server, Some("k"), &images).await;
        // Cut: GOAWAY at --read-timeout (2 s), closed half a second later.
        tokio::time::timeout(Duration::from_secs(6), connection).await.expect("the connection was never cut").unwrap();
        let lived = opened.elapsed();
        assert!(lived < Duration::from_secs(5), "the unauthenticated connection lived {lived:?}");
        others_are_answered(&server, Some("k"), &images).await;
        drop(stalled);
    });
    let t0 = Instant::now();
    assert_eq!(server.terminate(Duration::from_secs(35)), 0, "{}", server.log());
    assert!(t0.elapsed() < Duration::from_secs(3), "SIGTERM took {:?}", t0.elapsed());
}

/// An authenticated client that announces a window of 0 and asks for
/// answers it never takes: the connection is closed --idle-timeout after
/// the answers stopped moving, and what its calls held is given back; a
/// SIGTERM meanwhile exits 0 within --drain-timeout.
#[test]
fn a_stalled_answer_closes_its_connection() {
    let dir = tmp();
    let (images, _) = mnist_images(dir.path(), 64);
    let mut server = Server::start(
        &root().join("models"),
        &["--idle-timeout", "1", "--max-inflight-bytes", "2M", "--max-body", "1M", "--log", "warn"],
    );
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let (mut hog, connection) = window_zero_client(&server.grpc).await;
        let message = frame(false, &model_infer("autoencoder", &images, 64).encode_to_vec());
        let mut held = Vec::new();
        for _ in 0..8 {
            let (response, mut stream) = hog.send_request(call("ModelInfer", None, false), false).unwrap();
            stream.reserve_capacity(message.len());
            stream.send_data(message.clone(), true).unwrap();
            held.push((response, stream));
        }
        let t0 = Instant::now();
        tokio::time::timeout(Duration::from_secs(8), connection).await.expect("the stalled connection stayed").unwrap();
        assert!(t0.elapsed() < Duration::from_secs(5), "closed after {:?}", t0.elapsed());
        drop(held);
        others_are_answered(&server, None, &images).await;
    });
    let text = String::from_utf8(get(&server.http, "/metrics").body).unwrap();
    assert_eq!(metric(&text, "infer_requests_in_flight"), 1.0, "the scrape alone: {text}");
    // A second hog, then SIGTERM: the drain cuts it rather than wait.
    runtime.block_on(async {
        let (mut hog, _connection) = window_zero_client(&server.grpc).await;
        let message = frame(false, &model_infer("autoencoder", &images, 64).encode_to_vec());
        let (_response, mut stream) = hog.send_request(call("ModelInfer", None, false), false).unwrap();
        stream.reserve_capacity(message.len());
        stream.send_data(message, true).unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let t0 = Instant::now();
        let code = tokio::task::block_in_place(|| server.terminate(Duration::from_secs(35)));
        assert_eq!(code, 0, "{}", server.log());
        assert!(t0.elapsed() < Duration::from_secs(12), "SIGTERM took {:?}", t0.elapsed());
    });
}

/// Compressed messages are inflated within the budget and the limit their
/// call sets, never by tonic on an I/O thread: 2 connections × 16 gzip
/// liveness calls that inflate to 64 MiB each (they took the server from
/// 76 to 2,123 MiB), 16 gzip ModelInfer bombs, and 16 gzip REST bodies to
/// `/classify` (which takes --max-body, 64 MiB) at once. Every one is
/// refused, other clients are answered, and the peak resident memory stays
/// within 256 MiB of idle. Default flags.
#[test]
fn compressed_bombs_are_inflated_within_the_budget() {
    let dir = tmp();
    let (images, _) = mnist_images(dir.path(), 64);
    let server = Server::start(&root().join("models"), &["--log", "warn"]);
    let bomb = bytes::Bytes::from(gzip(&vec![0u8; 64 << 20]));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    // Idle is a server that has answered: what its models' runs hold is
    // not the bombs' (the committed classifier's first answers add tens of MiB).
    runtime.block_on(others_are_answered(&server, None, &images));
    let (idle, _) = rss_mib(&server);
    runtime.block_on(async {
        let rest: Vec<_> = (0..16)
            .map(|_| {
                let (http, bomb) = (server.http.clone(), bomb.clone());
                tokio::task::spawn_blocking(move || {
                    let headers = [("content-encoding", "gzip".to_string()), ("content-type", "image/png".into())];
                    request(&http, "POST", "/classify/classifier", &headers, &bomb).status
                })
            })
            .collect();
        let mut calls = Vec::new();
        for rpc in ["ServerLive", "ServerLive", "ModelInfer"] {
            let mut client = h2_client(&server.grpc).await;
            for _ in 0..16 {
                let (response, mut stream) = client.send_request(call(rpc, None, true), false).unwrap();
                stream.reserve_capacity(bomb.len() + 5);
                stream.send_data(frame(true, &bomb), true).unwrap();
                calls.push(response);
            }
        }
        for response in calls {
            let response = tokio::time::timeout(Duration::from_secs(20), response).await.expect("answered").unwrap();
            assert_eq!(grpc_status(response).await, "8", "RESOURCE_EXHAUSTED");
        }
        for r in rest {
            // Inflated to --max-body and refused as no picture, or 503 while the budget was spent.
            let status = r.await.unwrap();
            assert!(status == 413 || status == 400 || status == 503, "REST bomb: {status}");
        }
        others_are_answered(&server, None, &images).await;
    });
    let (now, peak) = rss_mib(&server);
    eprintln!("compressed bombs: RSS {idle:.0} MiB idle, {peak:.0} MiB at the peak, {now:.0} MiB after");
    assert!(peak - idle < 256.0, "RSS {idle:.0} MiB idle, {peak:.0} MiB at the peak ({now:.0} MiB after)");
}

/// REST reserves what arrives, not what is declared: four connections that
/// declare 64 MiB bodies and send none of them (they pinned the 256 MiB
/// budget) hold nothing, and infers on both faces are answered.
#[test]
fn bodies_that_never_come_hold_nothing() {
    let dir = tmp();
    let (images, _) = mnist_images(dir.path(), 64);
    let server = Server::start(&root().join("models"), &["--log", "warn"]);
    let head = format!(
        "POST /classify/classifier HTTP/1.1\r\nhost: t\r\ncontent-type: image/png\r\ncontent-length: {}\r\n\r\n",
        64 << 20
    );
    let holders: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = TcpStream::connect(&server.http).unwrap();
            s.write_all(head.as_bytes()).unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(others_are_answered(&server, None, &images));
    drop(holders);
}

/// HTTP/2 connections with no call open get GOAWAY after --idle-timeout,
/// so idle ones that answer every PING free their --max-connections slots
/// (16 such held REST out of a 16-connection server for as long as they
/// stayed). --idle-timeout 3 here.
#[test]
fn idle_http2_connections_are_sent_away() {
    // 3 s: the four connections and the first look must fit before it, on a loaded machine too.
    let server =
        Server::start(&root().join("models"), &["--max-connections", "4", "--idle-timeout", "3", "--log", "warn"]);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let mut idle = Vec::new();
        for _ in 0..4 {
            // One liveness call each: the server has taken the connection
            // (and its slot) by the time it answers; then nothing.
            let (mut client, connection) = client_with_window(&server.grpc, 65_535).await;
            let live =
                status_of(&mut client, call("ServerLive", None, false), frame(false, &[]), Duration::from_secs(5));
            assert_eq!(live.await, "0");
            idle.push((client, connection));
        }
        let http = server.http.clone();
        let status = tokio::task::spawn_blocking(move || get(&http, "/v2/health/live").status).await.unwrap();
        assert_eq!(status, 503, "four idle connections hold the four slots");
        let t0 = Instant::now();
        for (_client, connection) in idle {
            tokio::time::timeout(Duration::from_secs(8), connection).await.expect("an idle connection stayed").unwrap();
        }
        assert!(t0.elapsed() < Duration::from_secs(6), "sent away after {:?}", t0.elapsed());
        // The slots are free once the server has seen the closes.
        let http = server.http.clone();
        let freed = tokio::task::spawn_blocking(move || {
            (0..20).any(|_| {
                std::thread::sleep(Duration::from_millis(100));
                get(&http, "/v2/health/live").status == 200
            })
        });
        assert!(freed.await.unwrap(), "the idle connections' slots were not freed");
    });
}

/// A load request's config is a client's input: a default_model_filename
/// that is a path (Triton's CVE-2023-31036), and counts past the command
/// line's caps (a max_batch_size of 2^31-1 aborted the server), are
/// refused by name with the same words whether or not the path exists; the
/// model keeps serving. The refusals are a snapshot.
#[test]
fn load_configs_are_checked_like_any_input() {
    let dir = tmp();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(repo.join("digits/1")).unwrap();
    std::fs::copy(root().join("models/classifier.onnx"), repo.join("digits/1/model.onnx")).unwrap();
    std::fs::write(repo.join("digits/config.pbtxt"), "name: \"digits\"\nmax_batch_size: 8\n").unwrap();
    let (images, _) = mnist_images(dir.path(), 1);
    let server = Server::start(&repo, &["--model-control-mode", "explicit", "--load-model", "*", "--log", "warn"]);
    let a = server.http.as_str();
    let mut lines = Vec::new();
    for (case, config) in [
        ("a path up and out", serde_json::json!({"default_model_filename": "../../../../etc/hostname"})),
        ("a path up and out, to nothing", serde_json::json!({"default_model_filename": "../../../../no/such/file"})),
        ("an absolute path", serde_json::json!({"default_model_filename": "/etc/hostname"})),
        ("the parent", serde_json::json!({"default_model_filename": ".."})),
        ("max_batch_size 2^31-1", serde_json::json!({"max_batch_size": 2147483647})),
        (
            "max_queue_size 2^31-1",
            serde_json::json!({"max_batch_size": 8, "dynamic_batching": {"default_queue_policy": {"max_queue_size": 2147483647}}}),
        ),
        ("100 000 instances", serde_json::json!({"max_batch_size": 8, "instance_group": [{"count": 100000}]})),
    ] {
        let body = serde_json::json!({"parameters": {"config": config.to_string()}});
        let r = post_json(a, "/v2/repository/models/digits/load", &body);
        assert_eq!(r.status, 400, "{case}: {}", String::from_utf8_lossy(&r.body));
        let error = r.error().replace(&repo.display().to_string(), "REPO");
        assert!(!error.contains("No such file") && !error.contains("os error"), "{case} tells the disk: {error}");
        lines.push(format!("{case}: {error}"));
        let r = request(a, "POST", "/v2/models/digits/infer", &[], &json_infer(&images, 1, &[]));
        assert_eq!(r.status, 200, "after {case}");
    }
    assert!(index(a, true).iter().any(|(name, _, state, _)| name == "digits" && state == "READY"));
    insta::assert_snapshot!("load_config_refusals", lines.join("\n"));
}

/// Poll mode follows links: a Kubernetes-style volume (`..data` swapped to
/// a new folder, the model's files links through it) reloads when the link
/// is swapped; it used to be skipped, links and all, and never reloaded.
#[test]
fn poll_follows_a_swapped_volume_link() {
    let dir = tmp();
    let (repo, volume) = (dir.path().join("repo"), dir.path().join("volume"));
    let (images, _) = mnist_images(dir.path(), 1);
    let put = |folder: &str, model: &str| {
        std::fs::create_dir_all(volume.join(folder)).unwrap();
        std::fs::copy(root().join("models").join(model), volume.join(folder).join("model.onnx")).unwrap();
    };
    put("..v1", "classifier.onnx");
    std::os::unix::fs::symlink("..v1", volume.join("..data")).unwrap();
    std::fs::create_dir_all(repo.join("digits/1")).unwrap();
    std::fs::write(repo.join("digits/config.pbtxt"), "name: \"digits\"\nmax_batch_size: 8\n").unwrap();
    std::os::unix::fs::symlink(volume.join("..data/model.onnx"), repo.join("digits/1/model.onnx")).unwrap();
    let server =
        Server::start(&repo, &["--model-control-mode", "poll", "--repository-poll-secs", "0.3", "--log", "warn"]);
    let a = server.http.as_str();
    let logits = || {
        json_rows(&request(a, "POST", "/v2/models/digits/infer", &[], &json_infer(&images, 1, &["logits"])), "logits")
    };
    let before = logits();
    // The volume's swap: a new folder, the link renamed over the old one.
    put("..v2", "classifier.int8.onnx");
    std::os::unix::fs::symlink("..v2", volume.join("..data_tmp")).unwrap();
    std::fs::rename(volume.join("..data_tmp"), volume.join("..data")).unwrap();
    std::fs::remove_dir_all(volume.join("..v1")).unwrap();
    let t0 = Instant::now();
    while logits() == before {
        assert!(t0.elapsed() < Duration::from_secs(10), "the swapped volume was never reloaded");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Triton's and KServe's clients send what the protocol allows and the
/// server used to refuse or mishandle: a raw binary request (header length
/// 0), `binary_data_size` on gRPC raw contents (KServe's SDK), `priority`
/// and `timeout` (a request still queued past its timeout is dropped and
/// answered 503 / UNAVAILABLE), a `bearer` scheme in lower case; an `id`
/// that is not a string is refused; every request is counted with its
/// model's version; a model name with CR/LF cannot forge a log line; and a
/// ModelInfer message over what its model can need is refused at once.
#[test]
fn the_protocol_as_triton_and_kserve_clients_speak_it() {
    let dir = tmp();
    let (images, _) = mnist_images(dir.path(), 2);
    let server = Server::start(&root().join("models"), &["--api-key", "k", "--log", "info"]);
    let a = server.http.as_str();
    let key = ("authorization", "bearer k".to_string());
    let path = "/v2/models/classifier/infer";
    let want = json_rows(
        &request(a, "POST", path, std::slice::from_ref(&key), &json_infer(&images, 2, &["probabilities"])),
        "probabilities",
    );
    // Raw binary: the body is the input, two images.
    let raw: Vec<u8> = images.iter().flat_map(|v| v.to_le_bytes()).collect();
    let headers = [key.clone(), ("inference-header-content-length", "0".to_string())];
    let r = request(a, "POST", path, &headers, &raw);
    assert_eq!(json_rows(&r, "probabilities"), want, "raw binary request");
    let r = request(a, "POST", path, &headers, &raw[..1000]);
    assert_eq!(r.status, 400);
    assert!(r.error().contains("a whole number of 1×28×28 FP32 images"), "{}", r.error());
    // id, priority, timeout.
    let with = |patch: serde_json::Value| {
        let mut v: serde_json::Value = serde_json::from_slice(&json_infer(&images, 2, &["probabilities"])).unwrap();
        for (k, e) in patch.as_object().unwrap() {
            v[k] = e.clone();
        }
        request(a, "POST", path, std::slice::from_ref(&key), &serde_json::to_vec(&v).unwrap())
    };
    let r = with(serde_json::json!({"id": 7}));
    assert_eq!((r.status, r.error()), (400, "the request's id is 7, not a string".to_string()));
    let r = with(serde_json::json!({"parameters": {"priority": 1, "timeout": 10_000_000}}));
    assert_eq!(json_rows(&r, "probabilities"), want, "priority and a timeout of 10 s");
    let r = with(serde_json::json!({"parameters": {"timeout": 1}}));
    assert_eq!(r.status, 503, "a 1 µs timeout expires in the queue: {}", String::from_utf8_lossy(&r.body));
    assert!(r.error().contains("timeout (1 µs) passed while it was queued"), "{}", r.error());
    let r = with(serde_json::json!({"parameters": {"timeout": "soon"}}));
    assert_eq!((r.status, r.error()), (400, "parameter timeout is \"soon\", not a whole number ≥ 0".to_string()));

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let mut client = h2_client(&server.grpc).await;
        let with_size = |size: u64| {
            let mut m = model_infer("classifier", &images, 2);
            m.inputs[0].parameters.insert(
                "binary_data_size".into(),
                InferParameter {
                    parameter_choice: Some(serve::proto::infer_parameter::ParameterChoice::Int64Param(size as i64)),
                },
            );
            frame(false, &m.encode_to_vec())
        };
        let within = Duration::from_secs(5);
        assert_eq!(
            status_of(&mut client, call("ModelInfer", Some("k"), false), with_size(2 * 784 * 4), within).await,
            "0"
        );
        assert_eq!(status_of(&mut client, call("ModelInfer", Some("k"), false), with_size(99), within).await, "3");
        // CR/LF in a model name.
        let forged = frame(false, &model_infer("nope\r\nFORGED", &images, 2).encode_to_vec());
        assert_eq!(status_of(&mut client, call("ModelInfer", Some("k"), false), forged, within).await, "5");
        // 1 MB for a model whose largest request is 64 images (266 KB): refused before it is all read.
        let mut big = model_infer("classifier", &images, 2);
        big.raw_input_contents[0].resize(1 << 20, 0);
        let t0 = Instant::now();
        assert_eq!(
            status_of(&mut client, call("ModelInfer", Some("k"), false), frame(false, &big.encode_to_vec()), within)
                .await,
            "8"
        );
        assert!(t0.elapsed() < Duration::from_millis(500), "refused after {:?}", t0.elapsed());
    });
    let log = server.log();
    assert!(!log.lines().any(|l| l.starts_with("FORGED")), "a forged log line:\n{log}");
    assert!(log.contains("nope\\r\\nFORGED"), "{log}");
    let metrics = request(a, "GET", "/metrics", std::slice::from_ref(&key), b"");
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    assert_eq!(
        metric(&text, r#"infer_requests_total{model="classifier",protocol="grpc",status="Ok",version="1"}"#),
        1.0,
        "{text}"
    );
    assert!(
        metric(&text, r#"infer_requests_total{model="classifier",protocol="http",status="200",version="1"}"#) >= 3.0,
        "{text}"
    );
}
